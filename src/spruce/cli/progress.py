"""Follow a job with a rich progress bar until it ends; Ctrl-C cancels it."""

from __future__ import annotations

import time
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from spruce.cli.common import err_console


def follow(describe: Any, cancel: Any, job_id: str, *, label: str, done_attr: str, bytes_attr: str,
           quiet: bool = False) -> Any:
    """Poll ``describe(job_id)`` until terminal, drawing records and bytes; return the final state."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("records"),
        TransferSpeedColumn(),
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
                progress.update(task, completed=getattr(d, done_attr), total=total or None)
                progress.tasks[task].fields["bytes"] = getattr(d, bytes_attr)
                if d.status in ("Completed", "Failed", "Cancelled"):
                    if d.status == "Completed" and total:
                        progress.update(task, completed=total)
                    return d
                time.sleep(0.2)
    except KeyboardInterrupt:
        cancel(job_id)
        err_console.print(f"cancelled job {job_id}")
        raise
