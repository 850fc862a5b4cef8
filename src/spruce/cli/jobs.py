"""``spruce jobs``: list, show, cancel and resume export and import jobs."""

from __future__ import annotations

import typer
from rich.table import Table

from spruce.cli.common import client, console, fail
from spruce.cli.progress import follow

app = typer.Typer(help="List, show, cancel and resume export and import jobs.", no_args_is_help=True)


def _status(c, s) -> str:
    if s.status in ("InProgress", "Pending") and not c.jobs.is_active(s.id):
        return f"{s.status} (interrupted: spruce jobs resume {s.id})"
    return s.status


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List jobs, oldest first."""
    c = client(ctx)
    table = Table("id", "kind", "index", "status", "%", "records", "created", "uri")
    for s in c.jobs.list():
        table.add_row(s.id, s.kind, s.index, _status(c, s), f"{s.percent_complete:.0f}", f"{s.records_done:,}",
                      s.created_at, s.uri)
    console.print(table)


@app.command("show")
def show(ctx: typer.Context, job_id: str) -> None:
    """Show one job's full status."""
    c = client(ctx)
    s = c.jobs.describe(job_id)
    table = Table("field", "value", show_header=False)
    for k, v in s.public().items():
        table.add_row(k, _status(c, s) if k == "status" else str(v))
    console.print(table)
    if s.status == "Failed":
        raise typer.Exit(1)


@app.command("cancel")
def cancel(ctx: typer.Context, job_id: str) -> None:
    """Cancel a job. An export leaves no manifest; an import keeps the files it fully committed."""
    s = client(ctx).jobs.cancel(job_id)
    console.print(f"job {job_id}: {'cancel requested' if not s.terminal else s.status}")


@app.command("resume")
def resume(ctx: typer.Context, job_id: str,
           quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.")) -> None:
    """Resume an interrupted job: an export re-runs from a fresh snapshot, an import continues
    after its last committed file."""
    c = client(ctx)
    s = c.jobs.resume(job_id, sync=False)
    kind_attr = ("records_exported", "bytes_written") if s.kind == "export" else ("records_imported", "bytes_read")
    describe = c.describe_export if s.kind == "export" else c.describe_import
    cancel_fn = c.cancel_export if s.kind == "export" else c.cancel_import
    d = follow(describe, cancel_fn, job_id, label=f"{s.kind} {s.index}", done_attr=kind_attr[0],
               bytes_attr=kind_attr[1], quiet=quiet)
    if d.status != "Completed":
        fail(f"{s.kind} {job_id} {d.status.lower()}: {d.error or 'no error recorded'}")
    console.print(f"{s.kind} {job_id} completed")
