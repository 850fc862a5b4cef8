"""``spruce jobs``: list, show, cancel and resume export and import jobs."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import typer

from spruce.cli.common import (
    JSON_HELP,
    QUIET_HELP,
    GlobalOptions,
    client,
    console,
    emit_fields,
    emit_json,
    emit_table,
    fail,
)
from spruce.cli.progress import check_completed, follow

if TYPE_CHECKING:
    from spruce.jobs.state import JobStore

app = typer.Typer(help="List, show, cancel and resume export and import jobs.", no_args_is_help=True)


def _open(ctx: typer.Context) -> tuple[Any, JobStore]:
    """The client and its job store; or, while another process (e.g. a ``--no-wait`` worker) owns the
    data folder, no client and the job files themselves (replaced atomically: safe to read)."""
    from spruce.client import Client
    from spruce.engine.engine import DataDirLocked, resolve_data_dir
    from spruce.jobs.state import JobStore

    opts: GlobalOptions = ctx.obj or GlobalOptions()
    if opts.host:  # --host: the server's jobs, through its client
        return client(ctx), None
    try:
        c = Client(data_dir=opts.data, resume_jobs=False)
    except DataDirLocked:
        return None, JobStore(resolve_data_dir(opts.data) / "jobs")
    except Exception:
        c = client(ctx)  # fails with the usual one-line error
    return c, c.jobs.store


class _JobFiles:
    """A data folder's job files, read without opening the folder (no engine, no lock, no
    numpy): all that ``jobs list`` and ``jobs show`` need, so they start fast and work while
    another process owns the folder. A pending or in-progress job is running exactly while the
    process that holds the folder's lock (its pid is in the lock file) is alive."""

    def __init__(self, data: str | None) -> None:
        import os
        from pathlib import Path

        from spruce.jobs.state import JobStore

        root = Path(data or os.environ.get("SPRUCE_DATA") or "spruce-data").expanduser().absolute()
        self.store = JobStore(root / "jobs") if (root / "jobs").is_dir() else None
        self.owner_alive = _holder_alive(root / ".lock")

    def list(self) -> list[Any]:
        return self.store.all() if self.store is not None else []

    def describe(self, job_id: str) -> Any:
        if self.store is None:
            from spruce.errors import NotFound

            raise NotFound(f"job {job_id!r} not found")
        return self.store.load(job_id)

    def is_active(self, job_id: str) -> bool:
        return self.owner_alive


def _holder_alive(lock: Any) -> bool:
    import json
    import os

    try:
        pid = json.loads(lock.read_text()).get("pid")
        if not isinstance(pid, int) or pid == os.getpid():
            return False
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError, AttributeError):
        return False
    return True


def _reader(ctx: typer.Context) -> Any:
    """What list and show read: the server's jobs with --host, else the job files."""
    from types import SimpleNamespace

    opts: GlobalOptions = ctx.obj or GlobalOptions()
    if opts.host:
        return client(ctx)
    return SimpleNamespace(jobs=_JobFiles(opts.data))


def _elsewhere(c: Any) -> bool:
    """The job files are read while another process owns the folder (it runs its jobs)."""
    return c is None or (isinstance(c.jobs, _JobFiles) and c.jobs.owner_alive)


def _status(c: Any, s: Any) -> str:
    if s.status in ("InProgress", "Pending"):
        if _elsewhere(c):
            return f"{s.status} (another process owns the data folder)"
        if not c.jobs.is_active(s.id):
            return f"{s.status} (not running: spruce jobs resume {s.id})"
    if s.status == "Interrupted":
        return f"Interrupted ({s.reason or 'stopped before it finished'}; spruce jobs resume {s.id})"
    if s.status == "Superseded" and s.reason:
        return f"Superseded ({s.reason})"
    return s.status


def _public(c: Any, s: Any) -> dict[str, Any]:
    """A job's public dict, plus ``running``: whether a process is working on it now (null when
    another process owns the data folder and this one cannot tell)."""
    d = s.public()
    if s.status in ("InProgress", "Pending"):
        d["running"] = None if _elsewhere(c) else bool(getattr(c.jobs, "is_active", lambda _id: True)(s.id))
    return d


def _statuses(values: list[str] | None) -> set[str] | None:
    from spruce.errors import InvalidArgument
    from spruce.jobs.state import normalize_status

    if not values:
        return None
    try:
        return {normalize_status(v) for v in values}
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc), param_hint="--status") from None


def _duration(value: str) -> timedelta:
    """"30m", "12h", "7d", "2w" or "0" as a timedelta."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", value or "")
    if not m or (not m.group(2) and m.group(1) != "0"):
        raise typer.BadParameter(f"{value!r} is not a duration like 30m, 12h, 7d or 2w (or 0)",
                                 param_hint="--older-than")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks", "": "seconds"}[m.group(2)]
    return timedelta(**{unit: int(m.group(1))})


STATUS_HELP = ("Only jobs in this status (repeatable): Pending, InProgress, Interrupted, Completed, Failed, "
               "Cancelled, Superseded; any spelling (COMPLETED, completed).")


@app.command("list")
def list_(ctx: typer.Context,
          status: list[str] = typer.Option(None, "--status", help=STATUS_HELP),
          kind: list[str] = typer.Option(None, "--kind", help="Only jobs of this kind (repeatable): export, "
                                         "import, remote-export, remote-import."),
          as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List jobs, oldest first. An interrupted job shows why it stopped and how to resume it."""
    wanted = _statuses(status)
    c = _reader(ctx)
    picked = [s for s in c.jobs.list()
              if (wanted is None or s.status in wanted) and (not kind or s.kind in kind)]
    if as_json:
        emit_json({"jobs": [_public(c, s) for s in picked]})
        return
    rows = [(s.id, s.kind, s.index, _status(c, s), f"{s.percent_complete:.0f}", f"{s.records_done:,}",
             s.created_at, s.uri) for s in picked]
    emit_table(("id", "kind", "index", "status", "%", "records", "created", "uri"), rows, fold=("status",))


@app.command("prune")
def prune(ctx: typer.Context,
          older_than: str = typer.Option("7d", "--older-than", help="Only jobs that ended longer ago than this: "
                                         "30m, 12h, 7d, 2w; 0 for all."),
          status: list[str] = typer.Option(None, "--status", help="Only ended jobs in this status (repeatable): "
                                           "Completed, Failed, Cancelled, Superseded."),
          dry_run: bool = typer.Option(False, "--dry-run", "-n", help="List what would be removed; remove nothing.")
          ) -> None:
    """Remove ended jobs from the history, with their rejects files and logs.

    Only ended jobs (Completed, Failed, Cancelled, Superseded) are removed. A job that is
    pending, running or interrupted is kept until it is resumed or cancelled. Archives and
    indexes are never touched: this forgets jobs, it deletes no data.
    """
    from spruce.errors import InvalidArgument
    from spruce.jobs.state import JobStore as Store

    age = _duration(older_than)
    wanted = _statuses(status)
    opts: GlobalOptions = ctx.obj or GlobalOptions()
    if opts.host:
        raise typer.BadParameter("a server keeps its own job history; run prune where the server's data folder is",
                                 param_hint="--host")
    from spruce.engine.engine import resolve_data_dir

    jobs_dir = resolve_data_dir(opts.data) / "jobs"
    if not jobs_dir.is_dir():
        console.print("pruned 0 job(s)")
        return
    try:
        pruned = Store(jobs_dir).prune(age, wanted, dry_run=dry_run)
    except InvalidArgument as exc:
        raise typer.BadParameter(str(exc), param_hint="--status") from None
    for s in pruned:
        console.print(f"{'would prune' if dry_run else 'pruned'} {s.id} ({s.kind} {s.index}, {s.status}, "
                      f"ended {s.finished_at or s.created_at})", highlight=False, soft_wrap=True)
    console.print(f"{'would prune' if dry_run else 'pruned'} {len(pruned)} job(s)")


@app.command("show")
def show(ctx: typer.Context, job_id: str = typer.Argument(..., metavar="JOB"),
         as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Show one job's full status. Exits 1 if the job failed."""
    c = _reader(ctx)
    s = c.jobs.describe(job_id)
    if as_json:
        emit_json(_public(c, s))
        if s.status == "Failed":
            raise typer.Exit(1)
        return
    emit_fields((k, _status(c, s) if k == "status" else v) for k, v in s.public().items())
    if s.status == "Failed":
        raise typer.Exit(1)


@app.command("cancel")
def cancel(ctx: typer.Context, job_id: str = typer.Argument(..., metavar="JOB")) -> None:
    """Cancel a job. An export leaves no manifest and removes its parts; a restore keeps the
    files it fully committed (and removes an index it created, unless someone else wrote to it).
    A job that has already ended is left as it is, and the exit code is 1."""
    c, store = _open(ctx)
    before = c.jobs.describe(job_id) if c is not None else store.load(job_id)
    if before.terminal:
        fail(f"job {job_id} already ended ({before.status}); nothing to cancel")
    if c is None:  # the process running it picks the request up at its next batch
        store.request_cancel(job_id)
        s = store.load(job_id)
    else:
        s = c.jobs.cancel(job_id)
    console.print(f"job {job_id}: {'cancel requested' if not s.terminal else s.status}")


def _client_waiting(ctx: typer.Context, seconds: float) -> Any:
    """The client, waiting up to ``seconds`` for another process to release the data folder
    (a detached worker must not lose its job to a ``jobs show`` that happens to run as it starts)."""
    from spruce.client import Client
    from spruce.engine.engine import DataDirLocked

    opts: GlobalOptions = ctx.obj or GlobalOptions()
    if opts.host:
        return client(ctx)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            return Client(data_dir=opts.data, resume_jobs=False)
        except DataDirLocked:
            time.sleep(0.05)
    return client(ctx)


@app.command("resume")
def resume(ctx: typer.Context, job_id: str = typer.Argument(..., metavar="JOB"),
           quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
           as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
           wait_lock: float = typer.Option(0.0, "--wait-lock", hidden=True,
                                           help="Wait this many seconds for a busy data folder.")) -> None:
    """Resume an interrupted job: an export re-runs from a fresh snapshot, an import continues
    after its last committed file."""
    import spruce.sources  # noqa: F401 - registers the connectors' job kinds (copy, remote-*)

    c = _client_waiting(ctx, wait_lock)
    s = c.jobs.resume(job_id, sync=False)
    if s.kind == "export":
        describe, cancel_fn, attrs = c.describe_export, c.cancel_export, ("records_exported", "bytes_written")
    elif s.kind == "import":
        describe, cancel_fn, attrs = c.describe_import, c.cancel_import, ("records_imported", "bytes_read")
    else:  # a connector's job kind (remote-export, remote-import): follow its raw state
        describe, cancel_fn, attrs = c.jobs.describe, c.jobs.cancel, ("records_done", "bytes_done")
    d = follow(describe, cancel_fn, job_id, label=f"{s.kind} {s.index}", done_attr=attrs[0], bytes_attr=attrs[1],
               quiet=quiet or as_json)
    if as_json:
        emit_json(c.jobs.describe(job_id).public())
    check_completed(d, s.kind, job_id)
    if not as_json:
        console.print(f"{s.kind} {job_id} completed")
