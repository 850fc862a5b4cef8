"""``spruce restore``: load an archive or plain files into an index."""

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
from spruce.cli.progress import check_completed, follow

HELP = """Restore SRC (an archive, or your own .jsonl/.jsonl.gz/.parquet file or Pinecone-layout
folder) into INDEX, creating it if missing and merging if present.

SRC may also be a backup repository (`spruce backup`): then --snapshot ID|latest (default
latest) is restored with its whole chain (full snapshot, then each incremental in order,
deletions included) into a new or empty INDEX, which ends exactly as the index was at that
snapshot. Every file of every snapshot in the chain is checked (size and sha256) before
anything is written, and the record count of every namespace is checked at the end.

Guarantees, in --error-mode abort (the default): before anything is applied, every file
of an archive is checked against the manifest (size and sha256), so a damaged archive
changes nothing. Each file is then applied in one transaction and checked again as it
is read (record count, every record; an id that occurs twice in one file is an error,
never a silent overwrite); a file that fails contributes nothing. If the
restore created INDEX and then fails or is cancelled, INDEX is removed again (unless
someone else wrote to it meanwhile). Refused up front, before anything is written: a folder
of archives without a manifest.json of its own, a --namespace-map name the source lacks,
a --dimension the source contradicts, and a metric other than INDEX's (unless
--allow-metric-change). With --on-conflict fail,
conflicts are looked for before anything is applied. --on-conflict overwrite replaces only
records older than the restore's start: a record written since (by you, or another
client) is kept, and counted as kept.

One restore writes an index at a time: while another is running or interrupted, this one
is refused (--supersede cancels the other first). An interrupted restore resumes only when
asked: `spruce jobs resume ID`, or this same command run again; it resumes after the last
file that committed. It is refused, and marked Superseded, if INDEX was written after it
stopped, because re-applying its files would undo that write.
In --error-mode continue, bad records and damaged files are skipped and listed in a
rejects file, and the exit code is 1.

Selective restore: --namespace NS (repeatable; the source's names, before --namespace-map),
--ids-file FILE (one id per line) and --filter JSON (a metadata filter, as in queries) restore
only the records that pass every one given; only the selected namespaces' files are read. A
selection that matches no record fails, having written nothing, unless --allow-empty. They
combine with --namespace-map and --on-conflict, and a resumed restore applies the same
selection. A single plain file has no namespace to select: name the namespace it goes into
with --target-namespace.

--dry-run reads and checks everything as the restore would and writes nothing (INDEX is not
even created): it reports, per namespace, the records it would write, its conflicts with
INDEX (what --on-conflict would do with them) and the records the selection leaves out.
Exit code 1 when the restore would fail (--on-conflict fail with conflicts, an empty selection).
"""


def restore(
    ctx: typer.Context,
    src: str = typer.Argument(..., help="Archive folder, file, or storage URI."),
    index: str = typer.Argument(..., help="Target index (created if missing)."),
    on_conflict: str = typer.Option("overwrite", "--on-conflict", metavar="overwrite|skip|fail", help="overwrite, skip, or fail (checked "
                                    "before anything is applied)."),
    namespace_map: list[str] = typer.Option(None, "--namespace-map", help="OLD=NEW (repeatable)."),
    error_mode: str = typer.Option("abort", "--error-mode", metavar="abort|continue", help="abort, or continue (skip bad records and "
                                   "list them in a rejects file)."),
    namespace: list[str] = typer.Option(None, "--namespace", "-n", help="Restore only this namespace of the "
                                        "source (repeatable; __default__ is the default)."),
    target_namespace: str = typer.Option(None, "--target-namespace", help="The namespace a single plain file "
                                         "(or the files at the top of a plain folder) is restored into."),
    ids_file: str = typer.Option(None, "--ids-file", help="Restore only the ids in this file, one per line "
                                 "(- reads standard input)."),
    filter: str = typer.Option(None, "--filter", help="Restore only records matching this metadata filter (JSON)."),
    allow_empty: bool = typer.Option(False, "--allow-empty", help="A selection that matches nothing completes "
                                     "with 0 records instead of failing."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Read and check everything, write nothing; report "
                                 "what the restore would do per namespace."),
    dimension: int = typer.Option(None, "--dimension", "-d", help="Dimension when creating from plain files."),
    metric: str = typer.Option(None, "--metric", "-m", metavar="cosine|euclidean|dotproduct", help="Metric when creating the index."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Start the job and return its id at once."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    supersede: bool = typer.Option(False, "--supersede", help="Cancel another restore that is writing INDEX "
                                   "(running or interrupted) first, instead of refusing."),
    allow_lossy: bool = typer.Option(False, "--allow-lossy", help="INDEX is another engine's collection: convert "
                                     "what it cannot hold (docs/CONNECTORS.md) instead of refusing."),
    allow_metric_change: bool = typer.Option(False, "--allow-metric-change", help="Restore into an existing "
                                             "index whose metric differs from the archive's (refused otherwise)."),
    endpoint_url: str = typer.Option(None, "--endpoint-url", envvar="AWS_ENDPOINT_URL",
                                     help="S3-compatible endpoint (MinIO, SeaweedFS, R2, Ceph)."),
    target: str = typer.Option("spruce", "--to", metavar="spruce|pinecone", help="spruce (this data folder) or pinecone (the Pinecone "
                               "API; key from PINECONE_API_KEY)."),
    pinecone_host: str = typer.Option(None, "--pinecone-host", help="With --to pinecone: the control-plane URL "
                                      "(default Pinecone's own, https://api.pinecone.io)."),
    cloud: str = typer.Option("aws", "--cloud", help="With --to pinecone: cloud of a created index."),
    region: str = typer.Option("us-east-1", "--region", help="With --to pinecone: region of a created index."),
    bulk_import: bool = typer.Option(False, "--bulk-import", help="With --to pinecone: let the target import "
                                     "a Parquet archive from s3/gs/az itself (start_import)."),
    integration_id: str = typer.Option(None, "--integration-id", help="With --bulk-import: the storage "
                                       "integration that lets Pinecone read the bucket."),
    snapshot: str = typer.Option(None, "--snapshot", metavar="ID|latest", help="SRC is a backup repository: "
                                 "restore this snapshot (default latest) and its chain into a new or empty INDEX."),
    source_index: str = typer.Option(None, "--index", help="With a repository: --snapshot latest of this index."),
    key_file: str = typer.Option(None, "--key-file", help="An encrypted archive or snapshot: the key file it was "
                                 "written with (or set SPRUCE_ARCHIVE_PASSPHRASE). Without the right key the restore "
                                 "stops at once and writes nothing."),
) -> None:
    from spruce.cli.key import reading_key

    key = reading_key(key_file)
    selecting = bool(namespace or target_namespace or ids_file or filter or allow_empty or dry_run)
    if selecting and (snapshot is not None or target != "spruce"):
        raise typer.BadParameter("--namespace, --target-namespace, --ids-file, --filter, --allow-empty and "
                                 "--dry-run restore an archive or plain files into a spruce index; not with "
                                 "--snapshot or --to pinecone", param_hint="--namespace")
    if snapshot is not None or _is_repository(src, endpoint_url):
        if selecting:
            raise typer.BadParameter(f"{src} is a backup repository: --namespace, --target-namespace, --ids-file, "
                                     "--filter, --allow-empty and --dry-run are not available with it",
                                     param_hint="--namespace")
        from spruce.cli.backup import restore_snapshot

        restore_snapshot(ctx, src, index, snapshot=snapshot or "latest", source_index=source_index,
                         endpoint_url=endpoint_url, quiet=quiet, as_json=as_json, key=key)
        return
    if target == "pinecone":
        if namespace_map or on_conflict != "overwrite" or error_mode != "abort" or dimension or metric:
            raise typer.BadParameter("--namespace-map, --on-conflict, --error-mode, --dimension and --metric "
                                     "are not available with --to pinecone", param_hint="--to")
        _to_pinecone(ctx, src, index, pinecone_host=pinecone_host, cloud=cloud, region=region,
                     bulk_import=bulk_import, integration_id=integration_id, endpoint_url=endpoint_url,
                     no_wait=no_wait, quiet=quiet, as_json=as_json)
        return
    from spruce.sources.registry import scheme_of

    if scheme_of(index) is not None:  # another engine's collection: a copy job from the archive
        from spruce.cli.copy import run_copy_to_end
        from spruce.sources.copy import start_copy

        if selecting:
            raise typer.BadParameter("--namespace, --target-namespace, --ids-file, --filter, --allow-empty and "
                                     "--dry-run are not available for a restore into another engine",
                                     param_hint="--namespace")
        c = client(ctx)
        if getattr(c, "remote", False):
            fail("a restore into another engine runs in this process: drop --host")
        t0 = time.perf_counter()
        job_id = launch(c, None, lambda run: start_copy(c.engine, src, index, allow_lossy=allow_lossy,
                                                         manager=c.jobs, run=run), no_wait=no_wait, as_json=as_json)
        if job_id is not None:
            run_copy_to_end(c, job_id, f"restore {index}", quiet=quiet, as_json=as_json, t0=t0)
        return
    if target != "spruce" or pinecone_host or bulk_import or integration_id:
        raise typer.BadParameter("--to must be spruce or pinecone; --pinecone-host, --bulk-import and "
                                 "--integration-id go with --to pinecone", param_hint="--to")
    from spruce import jobs

    for value, allowed, hint in ((on_conflict, jobs.ON_CONFLICT, "--on-conflict"),
                                 (error_mode, jobs.ERROR_MODES, "--error-mode")):
        if value not in allowed:
            raise typer.BadParameter(f"must be one of {', '.join(allowed)}, not {value!r}", param_hint=hint)
    nsmap = {}
    for item in namespace_map or []:
        if "=" not in item:
            raise typer.BadParameter(f"{item!r} is not OLD=NEW", param_hint="--namespace-map")
        old, new = item.split("=", 1)
        nsmap[old] = new
    selection: dict[str, object] = {}
    if ids_file is not None:
        from spruce.jobs.selection import read_ids_file

        selection["ids"] = read_ids_file(ids_file)
    if filter is not None:
        selection["filter"] = parse_json_option(filter, "--filter")
    if namespace:
        selection["namespaces"] = namespace
    if allow_empty:
        selection["allow_empty"] = True
    if dry_run:
        selection["dry_run"] = True
    c = client(ctx)
    if key is not None:
        if getattr(c, "remote", False):
            fail("--key-file and SPRUCE_ARCHIVE_PASSPHRASE decrypt in this process: drop --host (a key is "
                 "never sent to a server)")
        selection["encryption_key"] = key
    storage = {"endpoint_url": endpoint_url} if endpoint_url and src.startswith("s3://") else None
    t0 = time.perf_counter()
    options = dict(on_conflict=on_conflict, namespace_map=nsmap or None, error_mode=error_mode,
                   namespace=target_namespace, dimension=dimension, metric=metric, supersede=supersede,
                   allow_metric_change=allow_metric_change, **selection)
    job_id = launch(  # with --host, SRC is sent as given and resolved by the server
        c, lambda: c.Index(index).upsert_from_file(src, sync=False, **options).import_id,
        lambda run: jobs.start_import(c.engine, index, src, sync=False, storage_options=storage,
                                      manager=c.jobs, run=run, **options),
        no_wait=no_wait, as_json=as_json)
    if job_id is None:
        return
    d = follow(c.describe_import, c.cancel_import, job_id, label=f"{'dry run: ' if dry_run else ''}restore {index}",
               done_attr="records_imported", bytes_attr="bytes_read", quiet=quiet or as_json)
    if as_json:
        emit_json(c.jobs.describe(job_id).public())
    check_completed(d, "restore", job_id)
    if dry_run:
        _print_dry_run(d, index, quiet=as_json)
        if not (d.dry_run_report or {}).get("wouldSucceed", True) or d.records_rejected:
            raise typer.Exit(1)
        return
    if as_json:
        if d.records_rejected:
            raise typer.Exit(1)
        return
    secs = time.perf_counter() - t0
    console.print(f"restored [bold]{d.records_imported:,}[/] records into {index} in {secs:.1f}s "
                  f"({d.records_imported / max(secs, 1e-9):,.0f} records/s)")
    for note in d.notes:
        if "superseded job" in note:
            console.print(note, highlight=False)
    if d.records_skipped:
        console.print(f"skipped {d.records_skipped:,} record(s) that {index} already held (--on-conflict skip)")
    if d.records_skipped_by_selection:
        console.print(f"left out {d.records_skipped_by_selection:,} record(s) of the source that the selection "
                      "does not match")
    if d.records_kept_newer:
        console.print(f"kept {d.records_kept_newer:,} record(s) that were written to {index} after the restore "
                      "started (never overwritten)")
    if d.records_rejected:
        console.print(f"[yellow]{d.records_rejected:,} record(s) rejected; see {d.rejects_path}[/]")
        raise typer.Exit(1)


def _print_dry_run(d: object, index: str, *, quiet: bool) -> None:
    """The dry run's report as a table, one row per source namespace (--json prints it whole)."""
    from spruce.cli.common import emit_table

    report = getattr(d, "dry_run_report", None) or {}
    if quiet or not report:
        return

    def n(v: object) -> str:
        return "?" if v is None else f"{v:,}"

    rows = [(name, row["target"], "yes" if row["selected"] else "no", n(row["records"]),
             n(row["skippedBySelection"]), n(row["wouldWrite"]), n(row["new"]), n(row["conflicts"]),
             n(row["wouldOverwrite"]), n(row["wouldSkip"]), n(row["wouldFail"]), n(row["wouldKeepNewer"]),
             n(row["rejected"])) for name, row in report["namespaces"].items()]
    emit_table(("namespace", "target", "selected", "records", "not selected", "would write", "new", "conflicts",
                "overwrite", "skip", "fail", "keep newer", "rejected"), rows,
               title=f"dry run of a restore into {index} (--on-conflict {report['onConflict']}): nothing was written")
    if report.get("problem"):
        from spruce.cli.common import err_console

        err_console.print(f"[bold red]the restore would fail:[/] {report['problem']}", highlight=False)
    else:
        t = report["totals"]
        console.print(f"the restore would write {t['wouldWrite']:,} record(s) into {index}"
                      f"{'' if report['targetExists'] else ' (a new index)'}", highlight=False)


def _is_repository(src: str, endpoint_url: str | None) -> bool:
    """SRC is a backup repository (it holds repository.json) rather than an archive."""
    from spruce.archive.repository import REPO_FILE
    from spruce.storage import open_store

    try:
        store = open_store(src, **({"endpoint_url": endpoint_url} if endpoint_url and src.startswith("s3://") else {}))
        return store.exists(REPO_FILE)
    except Exception:  # not a store spruce can open as a folder: the archive path decides
        return False


def _to_pinecone(ctx: typer.Context, src: str, index: str, *, pinecone_host: str | None, cloud: str, region: str,
                 bulk_import: bool, integration_id: str | None, endpoint_url: str | None, no_wait: bool,
                 quiet: bool, as_json: bool) -> None:
    """A "remote-import" job: listed by ``spruce jobs list``, followed with the usual progress bar.
    With --no-wait a detached worker runs it, taking the key from the environment it inherits."""
    import os

    from spruce.sources import pinecone as remote

    key = os.environ.get(remote.API_KEY_ENV)
    if not key:
        fail(f"set {remote.API_KEY_ENV} to the API key of the Pinecone project (it is never taken as a flag)")
    c = client(ctx)
    if getattr(c, "remote", False):
        fail("--to pinecone runs in this process: drop --host")
    storage = {"endpoint_url": endpoint_url} if endpoint_url and src.startswith("s3://") else None
    t0 = time.perf_counter()
    job_id = launch(c, None, lambda run: remote.start_remote_import(
        c.jobs, src, index, api_key=key, host=pinecone_host, cloud=cloud, region=region, bulk_import=bulk_import,
        integration_id=integration_id, storage_options=storage, run=run), no_wait=no_wait, as_json=as_json)
    if job_id is None:
        return
    d = follow(c.jobs.describe, c.jobs.cancel, job_id, label=f"restore {index} (pinecone)",
               done_attr="records_done", bytes_attr="bytes_done", quiet=quiet or as_json)
    if as_json:
        emit_json(d.public())
    check_completed(d, "restore", job_id)
    if as_json:
        return
    secs = time.perf_counter() - t0
    console.print(f"restored [bold]{d.records_done:,}[/] records into {index} in {secs:.1f}s "
                  f"({d.records_done / max(secs, 1e-9):,.0f} records/s)")
    for note in d.notes:
        console.print(f"  {note}", highlight=False)


restore.__doc__ = HELP
