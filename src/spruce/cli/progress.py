"""Follow a job with a rich progress bar until it ends; Ctrl-C cancels it."""

from __future__ import annotations

import time
from typing import Any

from spruce.cli.common import err_console, fail


def _rate_column() -> Any:
    """Records per second and megabytes moved so far (a job reports both); rich.progress is
    imported only by commands that draw a bar."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            mb = task.fields.get("bytes", 0) / 1e6
            return Text(f"{speed or 0:,.0f} rec/s  {mb:,.1f} MB", style="progress.data.speed")

    return RateColumn()


def follow(describe: Any, cancel: Any, job_id: str, *, label: str, done_attr: str, bytes_attr: str,
           quiet: bool = False) -> Any:
    """Poll ``describe(job_id)`` until terminal, drawing records and bytes; return the final state."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("records"),
        _rate_column(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
        disable=quiet or not err_console.is_terminal,  # no bar frames in logs and pipes
    )
    try:
        with progress:
            task = progress.add_task(label, total=None)
            while True:
                d = describe(job_id)
                total = d.records_total
                progress.update(task, completed=getattr(d, done_attr), total=total or None,
                                bytes=getattr(d, bytes_attr))
                if d.status in ("Completed", "Failed", "Cancelled"):
                    if d.status == "Completed" and total:
                        progress.update(task, completed=total)
                    return d
                time.sleep(0.2)
    except KeyboardInterrupt:
        cancel(job_id)
        err_console.print(f"cancelled job {job_id}")
        raise


def follow_to_completion(describe: Any, cancel: Any, job_id: str, *, what: str, label: str, done_attr: str,
                         bytes_attr: str, quiet: bool = False) -> Any:
    """``follow``, then exit 1 naming the job (``what`` is its kind) unless it Completed."""
    d = follow(describe, cancel, job_id, label=label, done_attr=done_attr, bytes_attr=bytes_attr, quiet=quiet)
    check_completed(d, what, job_id)
    return d


def end_text(d: Any) -> str:
    """Why a job ended the way it did, in words: its error, its reason, or who cancelled it."""
    error = getattr(d, "error", None) or getattr(d, "reason", None)
    if error:
        return error
    return "cancelled by the user" if d.status == "Cancelled" else "no error recorded"


def check_completed(d: Any, what: str, job_id: str) -> None:
    """Exit 1 naming the job (``what`` is its kind) unless it Completed."""
    if d.status != "Completed":
        status = d.status.lower()
        text = end_text(d)
        fail(f"{what} {job_id} {text}" if text.startswith(status) else f"{what} {job_id} {status}: {text}")
