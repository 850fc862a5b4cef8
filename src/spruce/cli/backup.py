"""``spruce backup``, ``snapshots``, ``forget``, ``check``: a backup repository, restic's words.

A repository is a folder or s3:// gs:// az:// prefix holding snapshots; each snapshot is a
normal spruce archive under ``snapshots/<id>/``. ``spruce restore REPO INDEX --snapshot ID``
restores one (see cli/restore.py).
"""

from __future__ import annotations

import time
from typing import Any

import typer

from spruce.cli.common import JSON_HELP, QUIET_HELP, client, console, emit_json, emit_table, fail, launch
from spruce.cli.key import ENCRYPT_HELP, KEY_FILE_HELP, writing_key
from spruce.cli.progress import check_completed, follow

BACKUP_HELP = """Back INDEX up into the repository REPO (a folder, or an s3:// gs:// az:// prefix; created
when missing) as one snapshot.

Guarantees: a snapshot is exactly the index at one moment, whatever is written meanwhile.
It is incremental (only the records written since its parent, and the ids deleted since)
when the repository holds an earlier snapshot of this same index whose chain is whole and
the index kept its deletions since; otherwise, or with --full, it is full. A full snapshot
is a plain archive (a Parquet one is a Pinecone bulk-import source as it is). Every file is
checksummed (sha256) in the manifest, and the manifest is written last: an interrupted
backup never counts as a snapshot, and never becomes another's parent. Runs from cron or a
Kubernetes CronJob as it is (exit 0 only when the snapshot committed).

--encrypt encrypts every file of the snapshot (AES-256-GCM, after compression) with --key-file
FILE or the passphrase in SPRUCE_ARCHIVE_PASSPHRASE, as `spruce export --encrypt` does. An
incremental snapshot builds only on a parent encrypted with the same key (otherwise it is
full), so a chain is restored with one key. Pinecone's bulk import cannot read encrypted files.
"""

SNAPSHOTS_HELP = "List the snapshots in REPO, oldest first: id, time, index, type, parent, records, size, tags."

FORGET_HELP = """Remove snapshots from REPO by a retention policy, as restic's forget does: --keep-last N
keeps the N newest; --keep-hourly/daily/weekly/monthly/yearly N keep the newest snapshot of
each of the N most recent hours/days/ISO weeks/months/years that have one (UTC); --keep-tag T
keeps every snapshot tagged T; -1 means unlimited. Each index's snapshots are judged on their
own. Guarantee: a snapshot a kept one builds on (its parent, and theirs) is always kept, so no
kept snapshot ever loses its chain. Without any --keep option nothing is removed.

Without --prune only the manifests go (the snapshots stop existing; their files stay until a
prune). --prune also deletes their files. For each snapshot the manifest is deleted first and
children go before parents, so an interrupted prune leaves nothing that claims to be a
snapshot but is not; the next prune finishes the job. --dry-run only prints the decision.
"""

CHECK_HELP = """Check every snapshot chain in REPO: each manifest parses, each parent exists and continues its
chain, each listed file is present with its size; with --read-data every file is read, its
sha256 compared and every record validated. Exit code 0: clean; 1: problems (each named by
snapshot and file).
"""


def _storage(repo: str, endpoint_url: str | None) -> dict[str, Any] | None:
    return {"endpoint_url": endpoint_url} if endpoint_url and repo.startswith("s3://") else None


def _repo(repo: str, endpoint_url: str | None) -> Any:
    from spruce.archive.repository import Repository
    from spruce.storage import open_store

    return Repository.open(open_store(repo, **(_storage(repo, endpoint_url) or {})))


def _local(ctx: typer.Context, what: str) -> Any:
    c = client(ctx)
    if getattr(c, "remote", False):
        fail(f"{what} runs in this process against --data; with a server, use its /repositories API")
    return c


ENDPOINT = typer.Option(None, "--endpoint-url", envvar="AWS_ENDPOINT_URL",
                        help="S3-compatible endpoint (MinIO, SeaweedFS, R2, Ceph).")


def backup(
    ctx: typer.Context,
    index: str = typer.Argument(..., help="Index to back up."),
    repo: str = typer.Argument(..., help="Repository: folder or storage URI (created when missing)."),
    full: bool = typer.Option(False, "--full", help="Write a full snapshot even when an incremental is possible."),
    format: str = typer.Option("jsonl.gz", "--format", "-f", metavar="jsonl.gz|jsonl|parquet",
                               help="Data format of the snapshot's files."),
    tag: list[str] = typer.Option(None, "--tag", help="Tag the snapshot (repeatable); forget --keep-tag keeps it."),
    encrypt: bool = typer.Option(False, "--encrypt", help=ENCRYPT_HELP),
    key_file: str = typer.Option(None, "--key-file", help=KEY_FILE_HELP),
    no_wait: bool = typer.Option(False, "--no-wait", help="Start the job and return its id at once."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    endpoint_url: str = ENDPOINT,
) -> None:
    from spruce.jobs.backup import start_backup

    c = _local(ctx, "backup")
    key = writing_key(encrypt, key_file)
    t0 = time.perf_counter()
    job_id = launch(c, None, lambda run: start_backup(
        c.engine, index, repo, full=full, format=format, tags=tag or (), storage_options=_storage(repo, endpoint_url),
        manager=c.jobs, run=run, encryption_key=key), no_wait=no_wait, as_json=as_json)
    if job_id is None:
        return
    d = follow(c.jobs.describe, c.jobs.cancel, job_id, label=f"backup {index}", done_attr="records_done",
               bytes_attr="bytes_done", quiet=quiet or as_json)
    check_completed(d, "backup", job_id)
    repo_obj = _repo(repo, endpoint_url)
    snap = repo_obj.resolve(d.options["snapshot_id"])
    if as_json:
        emit_json({**snap.to_dict(), "job": d.public()})
        return
    secs = time.perf_counter() - t0
    kind = "full" if snap.full else f"incremental (parent {snap.parent})"
    console.print(f"snapshot [bold]{snap.id}[/] of {index}: {kind}, {snap.records:,} records written"
                  + (f", {snap.deleted:,} deletions" if snap.deleted else "")
                  + f", {snap.bytes:,} bytes, in {secs:.1f}s", highlight=False)
    for note in d.notes:
        console.print(f"  {note}", highlight=False)


def snapshots(
    repo: str = typer.Argument(..., help="Repository: folder or storage URI."),
    index: str = typer.Option(None, "--index", help="Only this index's snapshots."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    endpoint_url: str = ENDPOINT,
) -> None:
    r = _repo(repo, endpoint_url)
    snaps = r.snapshots(index=index)
    if as_json:
        emit_json({"repository": r.store.uri, "snapshots": [s.to_dict() for s in snaps],
                   "unreadable": r.unreadable})
    else:
        emit_table(["id", "time", "index", "type", "parent", "records", "total", "bytes", "tags"],
                   [[s.id, s.manifest.created_at[:19].replace("T", " "), s.index,
                     "full" if s.full else "incr", s.parent or "-", f"{s.records:,}", f"{s.total_records:,}",
                     f"{s.bytes:,}", ",".join(s.tags)] for s in snaps])
        for path, why in r.unreadable.items():
            console.print(f"[yellow]unreadable: {path}: {why}[/]", highlight=False)
    if r.unreadable:
        raise typer.Exit(1)


def forget(
    repo: str = typer.Argument(..., help="Repository: folder or storage URI."),
    keep_last: int = typer.Option(0, "--keep-last", help="Keep the N newest snapshots."),
    keep_hourly: int = typer.Option(0, "--keep-hourly", help="Keep the newest of each of the last N hours."),
    keep_daily: int = typer.Option(0, "--keep-daily", help="Keep the newest of each of the last N days."),
    keep_weekly: int = typer.Option(0, "--keep-weekly", help="Keep the newest of each of the last N weeks."),
    keep_monthly: int = typer.Option(0, "--keep-monthly", help="Keep the newest of each of the last N months."),
    keep_yearly: int = typer.Option(0, "--keep-yearly", help="Keep the newest of each of the last N years."),
    keep_tag: list[str] = typer.Option(None, "--keep-tag", help="Keep snapshots with this tag (repeatable)."),
    prune: bool = typer.Option(False, "--prune", help="Also delete the forgotten snapshots' files."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would be removed; change nothing."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    endpoint_url: str = ENDPOINT,
) -> None:
    from spruce.archive.retention import Policy

    policy = Policy(last=keep_last, hourly=keep_hourly, daily=keep_daily, weekly=keep_weekly,
                    monthly=keep_monthly, yearly=keep_yearly, tags=tuple(keep_tag or ()))
    r = _repo(repo, endpoint_url)
    decision = r.plan_forget(policy)
    notes: list[str] = []
    if not dry_run and (decision.remove or prune):
        notes = r.forget(decision, prune=prune)
    if as_json:
        emit_json({"dryRun": dry_run, "keep": [{"id": s.id, "reasons": decision.reasons.get(s.id, [])}
                                               for s in decision.keep],
                   "remove": [s.id for s in decision.remove], "notes": notes})
        return
    if policy.empty():
        console.print("no --keep option given: nothing is removed")
    for s in decision.keep:
        console.print(f"keep   {s.id}  {s.index}  {', '.join(decision.reasons.get(s.id, []))}", highlight=False)
    for s in decision.remove:
        console.print(f"{'would remove' if dry_run else 'remove'} {s.id}  {s.index}", highlight=False)
    for note in notes:
        console.print(f"  {note}", highlight=False)


def check(
    repo: str = typer.Argument(..., help="Repository: folder or storage URI."),
    read_data: bool = typer.Option(False, "--read-data", help="Read every file: sha256 and every record."),
    key_file: str = typer.Option(None, "--key-file", help="Encrypted snapshots: the key file (or set "
                                 "SPRUCE_ARCHIVE_PASSPHRASE), to decrypt their records with --read-data."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    endpoint_url: str = ENDPOINT,
) -> None:
    from spruce.archive.repository import check_repository
    from spruce.cli.key import reading_key

    report = check_repository(_repo(repo, endpoint_url), read_data=read_data, key=reading_key(key_file))
    if as_json:
        emit_json(report.to_dict())
    else:
        for p in report.problems:
            console.print(f"[red]{p.kind}[/] snapshot {p.snapshot}: {p.message}", highlight=False)
        for note in report.notes:
            console.print(f"note: {note}", highlight=False)
        verdict = "no problems" if report.ok else f"{len(report.problems)} problem(s)"
        console.print(f"checked {report.snapshots} snapshot(s), {report.files_checked} file(s)"
                      + (f", {report.bytes_checked:,} bytes read" if read_data else "") + f": {verdict}")
    if not report.ok:
        raise typer.Exit(1)


def restore_snapshot(ctx: typer.Context, repo: str, index: str, *, snapshot: str, source_index: str | None,
                     endpoint_url: str | None, quiet: bool, as_json: bool, key: Any = None) -> None:
    """``spruce restore REPO INDEX [--snapshot ID|latest]``: the snapshot's chain into a new index."""
    from spruce.jobs.chain import start_snapshot_restore

    c = _local(ctx, "restore from a repository")
    t0 = time.perf_counter()
    job_id = start_snapshot_restore(c.engine, repo, index, snapshot=snapshot, source_index=source_index,
                                    storage_options=_storage(repo, endpoint_url), manager=c.jobs, sync=False,
                                    encryption_key=key).id
    d = follow(c.jobs.describe, c.jobs.cancel, job_id, label=f"restore {index}", done_attr="records_done",
               bytes_attr="bytes_done", quiet=quiet or as_json)
    if as_json:
        emit_json(d.public())
    check_completed(d, "restore", job_id)
    if as_json:
        return
    secs = time.perf_counter() - t0
    chain = d.options["chain"]
    console.print(f"restored snapshot [bold]{d.options['snapshot_id']}[/] ({len(chain)} snapshot(s) in its chain, "
                  f"{d.records_done:,} records applied) into {index} in {secs:.1f}s", highlight=False)
