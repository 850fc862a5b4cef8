"""``spruce export``: write an index to an archive in your own storage."""

from __future__ import annotations

import time

import typer

from spruce.cli.common import (
    JSON_HELP,
    QUIET_HELP,
    client,
    console,
    emit_json,
    fail,
    launch,
    parse_json_option,
)
from spruce.cli.key import ENCRYPT_HELP, KEY_FILE_HELP, writing_key
from spruce.cli.progress import check_completed, follow

HELP = """Export INDEX to DEST (a folder, file:// URI, or s3:// gs:// az:// URI).

Guarantees: the archive is exactly the index at the moment the export started
(one snapshot, even while writes continue); every data file carries a sha256 in
the manifest; the manifest is written last, so an interrupted export never looks
complete. An interrupted export is re-run from a fresh snapshot, never resumed
into a mixed state. DEST must not already hold an archive unless --overwrite.

--from pinecone exports INDEX from the Pinecone API instead (Pinecone itself, or
--pinecone-host URL of any server that speaks it), with the key in PINECONE_API_KEY.
A remote index cannot be frozen: the manifest says consistency "live", and the
export commits only if each namespace's count equals describe_index_stats at the
end and every listed id was fetched. --verify-after lists every id once more and
commits only if that listing matches the archive exactly.

--encrypt encrypts every data file with AES-256-GCM (after compression) before it leaves
this process, with the key in --key-file FILE (`spruce key generate FILE`) or the passphrase in
SPRUCE_ARCHIVE_PASSPHRASE; never a key on the command line. The manifest stays plaintext and
names only the key's fingerprint, so `spruce verify` checks every file without the key.
Pinecone's bulk import cannot read encrypted Parquet: restore an encrypted archive with spruce
(which decrypts), not with `--to pinecone --bulk-import`.
"""


def export(
    ctx: typer.Context,
    index: str = typer.Argument(..., help="Index to export."),
    dest: str = typer.Argument(..., help="Destination folder or storage URI."),
    format: str = typer.Option("jsonl.gz", "--format", "-f", metavar="jsonl.gz|jsonl|parquet",
                               help="jsonl.gz (gzip), jsonl (uncompressed) or parquet (Pinecone's import layout)."),
    namespace: list[str] = typer.Option(None, "--namespace", "-n",
                                        help="Export only this namespace (repeatable; __default__ is the default)."),
    filter: str = typer.Option(None, "--filter", help="Export only records matching this metadata filter (JSON)."),
    compression_level: int = typer.Option(None, "--compression-level", min=0, max=3,
                                          help="jsonl.gz only: gzip level 0-3 (isal's levels; default 1). "
                                          "jsonl is uncompressed and parquet uses snappy, which has no levels."),
    part_size_mb: int = typer.Option(None, "--part-size-mb", min=1, help="Roll parts over at about this size."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an archive already at DEST."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Start the job and return its id at once."),
    endpoint_url: str = typer.Option(None, "--endpoint-url", envvar="AWS_ENDPOINT_URL",
                                     help="S3-compatible endpoint (MinIO, SeaweedFS, R2, Ceph)."),
    source: str = typer.Option("spruce", "--from", metavar="spruce|pinecone", help="spruce (this data folder) or pinecone (the Pinecone "
                               "API; key from PINECONE_API_KEY)."),
    pinecone_host: str = typer.Option(None, "--pinecone-host", help="With --from pinecone: the control-plane "
                                      "URL (default Pinecone's own, https://api.pinecone.io)."),
    verify_after: bool = typer.Option(False, "--verify-after", help="With --from pinecone: list every id again "
                                      "at the end; commit only if it matches the archive."),
    encrypt: bool = typer.Option(False, "--encrypt", help=ENCRYPT_HELP),
    key_file: str = typer.Option(None, "--key-file", help=KEY_FILE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    if (encrypt or key_file) and (source == "pinecone" or _connector(index)):
        raise typer.BadParameter("encrypted exports are of this data folder's indexes (not --from pinecone or "
                                 "another engine's collection)", param_hint="--encrypt")
    if source == "pinecone":
        if filter or compression_level is not None or part_size_mb:
            raise typer.BadParameter("--filter, --compression-level and --part-size-mb are not "
                                     "available with --from pinecone", param_hint="--from")
        _from_pinecone(ctx, index, dest, format=format, namespace=namespace, pinecone_host=pinecone_host,
                       verify_after=verify_after, overwrite=overwrite, endpoint_url=endpoint_url,
                       no_wait=no_wait, quiet=quiet, as_json=as_json)
        return
    if _connector(index):  # another engine's collection: a copy job into the archive
        _from_connector(ctx, index, dest, format=format, overwrite=overwrite, namespace=namespace, no_wait=no_wait,
                        quiet=quiet, as_json=as_json)
        return
    if source != "spruce" or pinecone_host or verify_after:
        raise typer.BadParameter("--from must be spruce or pinecone; --pinecone-host and --verify-after go "
                                 "with --from pinecone", param_hint="--from")
    from spruce import jobs

    if format not in jobs.FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(jobs.FORMATS)}, not {format!r}", param_hint="--format")
    if compression_level is not None and format != "jsonl.gz":
        raise typer.BadParameter(f"applies to --format jsonl.gz only, not {format}", param_hint="--compression-level")
    c = client(ctx)
    key = writing_key(encrypt, key_file, remote=getattr(c, "remote", False))
    storage = {"endpoint_url": endpoint_url} if endpoint_url and dest.startswith("s3://") else None
    t0 = time.perf_counter()
    options = dict(format=format, namespaces=namespace or None, filter=parse_json_option(filter, "--filter"),
                   compression_level=compression_level,
                   part_max_bytes=part_size_mb * 1024 * 1024 if part_size_mb else None, overwrite=overwrite)
    job_id = launch(  # with --host, DEST is sent as given and resolved by the server
        c, lambda: c.Index(index).export_index(dest, sync=False, **options).export_id,
        lambda run: jobs.start_export(c.engine, index, dest, storage_options=storage, sync=False,
                                      manager=c.jobs, run=run, encryption_key=key, **options),
        no_wait=no_wait, as_json=as_json)
    if job_id is None:
        return
    d = follow(c.describe_export, c.cancel_export, job_id, label=f"export {index}",
               done_attr="records_exported", bytes_attr="bytes_written", quiet=quiet or as_json)
    if as_json:
        emit_json(c.jobs.describe(job_id).public())
    check_completed(d, "export", job_id)
    if as_json:
        return
    secs = time.perf_counter() - t0
    console.print(f"exported [bold]{d.records_exported:,}[/] records, {d.bytes_written / 1e6:,.1f} MB "
                  f"in {secs:.1f}s ({d.records_exported / max(secs, 1e-9):,.0f} records/s) to {d.uri}")
    console.print(f"export id {d.export_id}; download: {d.download_url}")
    if key is not None:
        console.print(f"encrypted ({key!r}); restoring it needs the same key", highlight=False)


def _connector(spec: str) -> bool:
    from spruce.sources.registry import scheme_of

    return scheme_of(spec) is not None


def _from_connector(ctx: typer.Context, src: str, dest: str, *, format: str, overwrite: bool,
                    namespace: list[str] | None, no_wait: bool, quiet: bool, as_json: bool) -> None:
    from spruce.cli.copy import run_copy_to_end
    from spruce.sources.copy import start_copy

    c = client(ctx)
    if getattr(c, "remote", False):
        fail("an export from another engine runs in this process: drop --host")
    t0 = time.perf_counter()
    nss = [("" if n == "__default__" else n) for n in namespace] if namespace else None
    job_id = launch(c, None, lambda run: start_copy(c.engine, src, dest, format=format, overwrite=overwrite,
                                                     namespaces=nss, manager=c.jobs, run=run),
                    no_wait=no_wait, as_json=as_json)
    if job_id is not None:
        run_copy_to_end(c, job_id, f"export {src}", quiet=quiet, as_json=as_json, t0=t0)


def _from_pinecone(ctx: typer.Context, index: str, dest: str, *, format: str, namespace: list[str] | None,
                   pinecone_host: str | None, verify_after: bool, overwrite: bool, endpoint_url: str | None,
                   no_wait: bool, quiet: bool, as_json: bool) -> None:
    """A "remote-export" job: listed by ``spruce jobs list``, followed with the usual progress bar.
    With --no-wait a detached worker runs it, taking the key from the environment it inherits."""
    import os

    from spruce.sources import pinecone as remote

    key = os.environ.get(remote.API_KEY_ENV)
    if not key:
        fail(f"set {remote.API_KEY_ENV} to the API key of the Pinecone project (it is never taken as a flag)")
    c = client(ctx)
    if getattr(c, "remote", False):
        fail("--from pinecone runs in this process: drop --host")
    storage = {"endpoint_url": endpoint_url} if endpoint_url and dest.startswith("s3://") else None
    t0 = time.perf_counter()
    job_id = launch(c, None, lambda run: remote.start_remote_export(
        c.jobs, index, dest, api_key=key, host=pinecone_host, namespaces=namespace or None, format=format,
        storage_options=storage, verify_after=verify_after, overwrite=overwrite, run=run), no_wait=no_wait,
        as_json=as_json)
    if job_id is None:
        return
    d = follow(c.jobs.describe, c.jobs.cancel, job_id, label=f"export {index} (pinecone)",
               done_attr="records_done", bytes_attr="bytes_done", quiet=quiet or as_json)
    if as_json:
        emit_json(d.public())
    check_completed(d, "export", job_id)
    if as_json:
        return
    secs = time.perf_counter() - t0
    console.print(f"exported [bold]{d.records_done:,}[/] records, {d.bytes_done / 1e6:,.1f} MB in {secs:.1f}s "
                  f"({d.records_done / max(secs, 1e-9):,.0f} records/s) from {index} to {d.uri}")
    for note in d.notes:
        console.print(f"  {note}", highlight=False)
    console.print(f"export id {d.id}; manifest: {d.download_url}")


export.__doc__ = HELP
