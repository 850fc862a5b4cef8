"""``spruce copy SRC DST``: move records between any two ends, with no archive in between."""

from __future__ import annotations

import time

import typer

from spruce.cli.common import JSON_HELP, QUIET_HELP, client, console, emit_json, fail, launch
from spruce.cli.progress import check_completed, follow

HELP = """Copy every record from SRC to DST. Each of them is an index of this data folder
(a plain name), an archive (a folder or storage URI), or another engine's collection:
qdrant:///PATH?collection=NAME, qdrant://HOST:PORT/COLLECTION, postgresql://USER@HOST:PORT/DB?table=NAME,
chroma:///PATH?collection=NAME, chroma://HOST:PORT/COLLECTION, milvus:///PATH.db?collection=NAME,
milvus://HOST:PORT/COLLECTION, lancedb:///PATH?table=NAME. Credentials come from each engine's
usual variables (QDRANT_API_KEY, PGPASSWORD, ...), never from the URI.

Guarantees: the original string ids, every namespace (a tag in the target, or one collection
per namespace with {namespace} in its name), sparse values and metadata survive wherever the
target can hold them. What the target cannot hold is found before anything is written, and the
copy is refused naming it, unless --allow-lossy (then it is converted by the rules in
docs/CONNECTORS.md and listed in the job's notes). The copy runs as a job: it resumes after its
last committed page (`spruce jobs resume ID`), never over changes made to the target since it
stopped, and it fails unless the target's counts match the source's at the end.
"""


def copy(
    ctx: typer.Context,
    src: str = typer.Argument(..., help="Index name, archive, or connector URI to read."),
    dst: str = typer.Argument(..., help="Index name, archive, or connector URI to write."),
    allow_lossy: bool = typer.Option(False, "--allow-lossy", help="Convert what DST cannot hold (documented "
                                     "per engine) instead of refusing; the job lists every conversion."),
    format: str = typer.Option("jsonl.gz", "--format", "-f", metavar="jsonl.gz|jsonl|parquet",
                               help="When DST is an archive: its data format."),
    overwrite: bool = typer.Option(False, "--overwrite", help="When DST is an archive: replace one already there."),
    namespace: list[str] = typer.Option(None, "--namespace", "-n", help="Copy only this namespace (repeatable)."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Start the job and return its id at once."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    from spruce.sources.copy import start_copy

    c = client(ctx)
    if getattr(c, "remote", False):
        fail("copy runs in this process: drop --host")
    t0 = time.perf_counter()
    nss = [("" if n == "__default__" else n) for n in namespace] if namespace else None
    job_id = launch(c, None, lambda run: start_copy(c.engine, src, dst, allow_lossy=allow_lossy, format=format,
                                                     overwrite=overwrite, namespaces=nss, manager=c.jobs, run=run),
                    no_wait=no_wait, as_json=as_json)
    if job_id is None:
        return
    run_copy_to_end(c, job_id, f"copy {src}", quiet=quiet, as_json=as_json, t0=t0)


def run_copy_to_end(c: object, job_id: str, label: str, *, quiet: bool, as_json: bool, t0: float) -> None:
    """Follow a copy job with the progress bar, then print its summary (or --json) and notes."""
    jobs = c.jobs  # type: ignore[attr-defined]
    d = follow(jobs.describe, jobs.cancel, job_id, label=label, done_attr="records_done", bytes_attr="bytes_done",
               quiet=quiet or as_json)
    if as_json:
        emit_json(d.public())
    check_completed(d, "copy", job_id)
    if as_json:
        return
    secs = time.perf_counter() - t0
    console.print(f"copied [bold]{d.records_done:,}[/] records from {d.options['src']} to {d.options['dst']} in "
                  f"{secs:.1f}s ({d.records_done / max(secs, 1e-9):,.0f} records/s)", highlight=False)
    for note in d.notes:
        console.print(f"  {note}", highlight=False)


copy.__doc__ = HELP
