"""``spruce export``: write an index to an archive in your own storage."""

from __future__ import annotations

import time

import typer

from spruce import jobs
from spruce.cli.common import client, console, detach, fail, parse_json_option
from spruce.cli.progress import follow

HELP = """Export INDEX to DEST (a folder, file:// URI, or s3:// gs:// az:// URI).

Guarantees: the archive is exactly the index at the moment the export started
(one snapshot, even while writes continue); every data file carries a sha256 in
the manifest; the manifest is written last, so an interrupted export never looks
complete. An interrupted export is re-run from a fresh snapshot, never resumed
into a mixed state. DEST must not already hold an archive unless --overwrite.
"""


def export(
    ctx: typer.Context,
    index: str = typer.Argument(..., help="Index to export."),
    dest: str = typer.Argument(..., help="Destination folder or storage URI."),
    format: str = typer.Option("jsonl.gz", "--format", "-f", help="jsonl.gz or parquet (Pinecone import layout)."),
    namespace: list[str] = typer.Option(None, "--namespace", "-n",
                                        help="Export only this namespace (repeatable; __default__ is the default)."),
    filter: str = typer.Option(None, "--filter", help="Export only records matching this metadata filter (JSON)."),
    compression_level: int = typer.Option(None, "--compression-level", min=0, max=9, help="gzip level 0-3 (isal) for jsonl.gz."),
    part_size_mb: int = typer.Option(None, "--part-size-mb", min=1, help="Roll parts over at about this size."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an archive already at DEST."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Start the job and return its id at once."),
    endpoint_url: str = typer.Option(None, "--endpoint-url", envvar="AWS_ENDPOINT_URL",
                                     help="S3-compatible endpoint (MinIO, SeaweedFS, R2, Ceph)."),
) -> None:
    c = client(ctx)
    storage = {"endpoint_url": endpoint_url} if endpoint_url and dest.startswith("s3://") else None
    t0 = time.perf_counter()
    state = jobs.start_export(
        c.engine, index, dest, format=format, namespaces=namespace or None,
        filter=parse_json_option(filter, "--filter"), compression_level=compression_level,
        part_max_bytes=part_size_mb * 1024 * 1024 if part_size_mb else None,
        overwrite=overwrite, storage_options=storage, sync=False, manager=c.jobs, run=not no_wait,
    )
    if no_wait:
        detach(c, state.id)
        console.print(state.id)
        return
    d = follow(c.describe_export, c.cancel_export, state.id, label=f"export {index}",
               done_attr="records_exported", bytes_attr="bytes_written")
    if d.status != "Completed":
        fail(f"export {d.export_id} {d.status.lower()}: {d.error or 'no error recorded'}")
    secs = time.perf_counter() - t0
    console.print(f"exported [bold]{d.records_exported:,}[/] records, {d.bytes_written / 1e6:,.1f} MB "
                  f"in {secs:.1f}s ({d.records_exported / max(secs, 1e-9):,.0f} records/s) to {d.uri}")
    console.print(f"export id {d.export_id}; download: {d.download_url}")


export.__doc__ = HELP
