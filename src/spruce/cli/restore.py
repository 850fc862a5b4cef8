"""``spruce restore``: load an archive or plain files into an index."""

from __future__ import annotations

import time

import typer

from spruce import jobs
from spruce.cli.common import client, console, detach, fail
from spruce.cli.progress import follow

HELP = """Restore SRC (an archive, or your own .jsonl/.jsonl.gz/.parquet file or Pinecone-layout
folder) into INDEX, creating it if missing and merging if present.

Guarantees: every archive file is checked against the manifest (sha256, record
count) and applied atomically: a file that fails the check, or holds a bad
record in --error-mode abort, contributes nothing. An interrupted restore
resumes from the last file that committed (`spruce jobs resume ID`), and
re-running is idempotent.
"""


def restore(
    ctx: typer.Context,
    src: str = typer.Argument(..., help="Archive folder, file, or storage URI."),
    index: str = typer.Argument(..., help="Target index (created if missing)."),
    on_conflict: str = typer.Option("overwrite", "--on-conflict", help="overwrite, skip, or fail (checked "
                                    "before anything is applied)."),
    namespace_map: list[str] = typer.Option(None, "--namespace-map", help="OLD=NEW (repeatable)."),
    error_mode: str = typer.Option("abort", "--error-mode", help="abort, or continue (skip bad records and "
                                   "list them in a rejects file)."),
    namespace: str = typer.Option(None, "--namespace", "-n", help="Namespace for a single plain file."),
    dimension: int = typer.Option(None, "--dimension", "-d", help="Dimension when creating from plain files."),
    metric: str = typer.Option(None, "--metric", "-m", help="Metric when creating the index."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Start the job and return its id at once."),
    endpoint_url: str = typer.Option(None, "--endpoint-url", envvar="AWS_ENDPOINT_URL",
                                     help="S3-compatible endpoint (MinIO, SeaweedFS, R2, Ceph)."),
) -> None:
    nsmap = {}
    for item in namespace_map or []:
        if "=" not in item:
            raise typer.BadParameter(f"{item!r} is not OLD=NEW", param_hint="--namespace-map")
        old, new = item.split("=", 1)
        nsmap[old] = new
    c = client(ctx)
    storage = {"endpoint_url": endpoint_url} if endpoint_url and src.startswith("s3://") else None
    t0 = time.perf_counter()
    state = jobs.start_import(
        c.engine, index, src, sync=False, on_conflict=on_conflict, namespace_map=nsmap or None,
        error_mode=error_mode, namespace=namespace, dimension=dimension, metric=metric,
        storage_options=storage, manager=c.jobs, run=not no_wait)
    if no_wait:
        detach(c, state.id)
        console.print(state.id)
        return
    d = follow(c.describe_import, c.cancel_import, state.id, label=f"restore {index}",
               done_attr="records_imported", bytes_attr="bytes_read")
    if d.status != "Completed":
        fail(f"restore {d.import_id} {d.status.lower()}: {d.error or 'no error recorded'}")
    secs = time.perf_counter() - t0
    console.print(f"restored [bold]{d.records_imported:,}[/] records into {index} in {secs:.1f}s "
                  f"({d.records_imported / max(secs, 1e-9):,.0f} records/s)")
    if d.records_rejected:
        console.print(f"[yellow]{d.records_rejected:,} record(s) rejected; see {d.rejects_path}[/]")
        raise typer.Exit(1)


restore.__doc__ = HELP
