"""Backup repositories: a storage prefix holding snapshots, each a normal archive.

Layout (docs/FORMAT.md, "Backup repositories")::

    <repo>/repository.json                  {"format": "spruce-repository", "version": 1, "id": ...}
    <repo>/snapshots/<snapshot_id>/...      one archive per snapshot, manifest.json last

Why plain archives: everything that reads an archive (verify, inspect, download, Pinecone's
bulk import of a full Parquet snapshot) reads a snapshot. A snapshot exists exactly when its
manifest does; a folder without one is a backup in progress or one that crashed, and is never
listed, never a parent, and never deleted by ``forget`` (it may be running).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from spruce.archive.manifest import MANIFEST_NAME, Manifest, parse_manifest, utc_now
from spruce.archive.retention import Decision, Policy, apply_policy
from spruce.errors import (
    ArchiveKeyError,
    ChainBroken,
    InvalidArgument,
    ManifestInvalid,
    NotFound,
    SpruceError,
)
from spruce.storage.base import Store

REPO_FILE = "repository.json"
REPO_FORMAT = "spruce-repository"
SNAPSHOTS = "snapshots"
#: Written into a snapshot's folder before ``forget --prune`` deletes its manifest: a folder
#: holding it and no manifest is a forgotten snapshot whose data deletion was interrupted.
FORGOTTEN = ".forgotten"


def new_snapshot_id(now: datetime | None = None) -> str:
    """Time-ordered and unique: ``20261204T070102Z-3f9a1c2e``."""
    return f"{(now or datetime.now(UTC)):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot as ``spruce snapshots`` lists it (from its manifest alone)."""

    id: str
    time: datetime
    index: str
    index_uid: str
    parent: str | None
    point: int
    since: int | None
    records: int  # records stored in this snapshot (an incremental: those written since the parent)
    total_records: int  # records in the index at the snapshot
    deleted: int  # ids deleted since the parent (incremental)
    bytes: int  # data and tombstone files
    tags: tuple[str, ...]
    format: str
    manifest: Manifest = field(repr=False, compare=False)

    @property
    def full(self) -> bool:
        return self.parent is None

    @property
    def path(self) -> str:
        return f"{SNAPSHOTS}/{self.id}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.manifest.created_at, "index": self.index,
                "type": "full" if self.full else "incremental", "parent": self.parent, "point": self.point,
                "records": self.records, "totalRecords": self.total_records, "deleted": self.deleted,
                "bytes": self.bytes, "format": self.format, "tags": list(self.tags)}

    @classmethod
    def from_manifest(cls, m: Manifest) -> SnapshotInfo:
        b = m.backup or {}
        created = datetime.fromisoformat(m.created_at.replace("Z", "+00:00"))
        return cls(
            id=b["snapshot_id"], time=created, index=m.source["index"], index_uid=b["index_uid"],
            parent=b["parent"], point=int(m.snapshot["point"]), since=b["since"],
            records=m.totals["records"], total_records=sum(ns.total_records or 0 for ns in m.namespaces),
            deleted=sum(t.count for t in m.tombstone_files),
            bytes=m.totals["bytes"] + sum(t.bytes for t in m.tombstone_files),
            tags=tuple(b.get("tags", ())), format=m.file_format, manifest=m,
        )


@dataclass
class RepoProblem:
    snapshot: str | None
    path: str
    kind: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot, "path": self.path, "kind": self.kind, "message": self.message}


class Repository:
    """A backup repository at ``store``'s root."""

    def __init__(self, store: Store, repo_id: str) -> None:
        self.store = store
        self.id = repo_id
        #: manifests that exist but do not read (a damaged snapshot): path -> why
        self.unreadable: dict[str, str] = {}

    @classmethod
    def open(cls, store: Store, *, create: bool = False) -> Repository:
        """Open (or, with ``create``, initialize) the repository; NotFound when there is none."""
        try:
            raw = store.get_bytes(REPO_FILE)
        except FileNotFoundError:
            if not create:
                raise NotFound(f"{store.uri}: not a spruce backup repository (no {REPO_FILE}); "
                               "`spruce backup INDEX REPO` creates one") from None
            doc = {"format": REPO_FORMAT, "version": 1, "id": secrets.token_hex(16), "created_at": utc_now()}
            store.put_bytes(REPO_FILE, json.dumps(doc, indent=2).encode() + b"\n")
            raw = store.get_bytes(REPO_FILE)  # a concurrent first backup may have won: use what is there
        try:
            doc = json.loads(raw)
            if doc.get("format") != REPO_FORMAT or doc.get("version") != 1 or not isinstance(doc.get("id"), str):
                raise ValueError("not a version 1 spruce repository file")
        except ValueError as exc:
            raise ManifestInvalid(f"{store.uri}/{REPO_FILE}: {exc}") from None
        return cls(store, doc["id"])

    def snapshot_store(self, snapshot_id: str) -> Store:
        return self.store.child(f"{SNAPSHOTS}/{snapshot_id}")

    def folders(self) -> dict[str, dict[str, int]]:
        """Every snapshot folder and the files in it (relative path -> size)."""
        out: dict[str, dict[str, int]] = {}
        for info in self.store.list(SNAPSHOTS + "/"):
            parts = info.path.split("/", 2)
            if len(parts) == 3 and parts[0] == SNAPSHOTS:
                out.setdefault(parts[1], {})[parts[2]] = info.size
        return out

    def snapshots(self, *, index: str | None = None) -> list[SnapshotInfo]:
        """Committed snapshots, oldest first. Unreadable manifests go to ``self.unreadable``."""
        self.unreadable = {}
        found: list[SnapshotInfo] = []
        for folder, files in sorted(self.folders().items()):
            if MANIFEST_NAME not in files:
                continue
            path = f"{SNAPSHOTS}/{folder}/{MANIFEST_NAME}"
            try:
                m = parse_manifest(self.store.get_bytes(path), where=path)
                if m.backup is None or m.backup["snapshot_id"] != folder:
                    raise ManifestInvalid(f"{path}: not the manifest of backup snapshot {folder!r}")
            except (SpruceError, FileNotFoundError) as exc:
                self.unreadable[path] = str(exc)
                continue
            info = SnapshotInfo.from_manifest(m)
            if index is None or info.index == index:
                found.append(info)
        found.sort(key=lambda s: (s.time, s.id))
        return found

    def resolve(self, ref: str = "latest", *, index: str | None = None) -> SnapshotInfo:
        """A snapshot by id, unique id prefix, or ``latest`` (of ``index`` when given)."""
        snaps = self.snapshots(index=index)
        if ref == "latest":
            indexes = {s.index for s in snaps}
            if len(indexes) > 1:
                raise InvalidArgument(f"{self.store.uri} holds snapshots of several indexes "
                                      f"({', '.join(sorted(indexes))}); say which with --index")
            if not snaps:
                raise NotFound(f"{self.store.uri}: no snapshots" + (f" of index {index!r}" if index else ""))
            return snaps[-1]
        hits = [s for s in snaps if s.id == ref] or [s for s in snaps if s.id.startswith(ref)]
        if len(hits) != 1:
            raise NotFound(f"{self.store.uri}: no snapshot {ref!r}" if not hits else
                           f"{self.store.uri}: {ref!r} matches {len(hits)} snapshots; give more of the id")
        return hits[0]

    def chain(self, snap: SnapshotInfo, snaps: Iterable[SnapshotInfo] | None = None) -> list[SnapshotInfo]:
        """The full snapshot ``snap`` builds on, then each incremental in order, ending with it.
        ChainBroken when a parent is missing or does not continue where its child starts."""
        by_id = {s.id: s for s in (snaps if snaps is not None else self.snapshots())}
        out = [snap]
        while out[-1].parent is not None:
            child = out[-1]
            parent = by_id.get(child.parent)  # type: ignore[arg-type]
            if parent is None:
                raise ChainBroken(f"snapshot {child.id}: its parent {child.parent} is missing from "
                                  f"{self.store.uri}; it cannot be restored")
            if parent.index_uid != child.index_uid or parent.point != child.since:
                raise ChainBroken(f"snapshot {child.id}: parent {parent.id} is of another index or another "
                                  f"point (point {parent.point}, the child starts after {child.since})")
            if len(out) > 100_000:
                raise ChainBroken(f"snapshot {snap.id}: its chain loops")
            out.append(parent)
        return out[::-1]

    def plan_forget(self, policy: Policy) -> Decision:
        return apply_policy(self.snapshots(), policy)

    def forget(self, decision: Decision, *, prune: bool) -> list[str]:
        """Forget the snapshots ``decision`` removes: newest first (a child goes before its
        parent, so a crash never leaves a snapshot whose parent is gone), and for each the
        manifest before anything else, so nothing left claims to be a snapshot it is not.
        Without ``prune`` only the manifest goes (the data stays until a prune). Returns notes."""
        notes: list[str] = []
        for snap in sorted(decision.remove, key=lambda s: (s.time, s.id), reverse=True):
            sub = self.snapshot_store(snap.id)
            sub.put_bytes(FORGOTTEN, b"forgotten by spruce forget\n")
            sub.delete(MANIFEST_NAME)
            if prune:
                n = _delete_folder(sub)
                notes.append(f"removed snapshot {snap.id} ({n} files)")
            else:
                notes.append(f"forgot snapshot {snap.id} (its data stays until `forget --prune`)")
        if prune:
            notes.extend(self.prune_forgotten())
        return notes

    def prune_forgotten(self) -> list[str]:
        """Delete the data of snapshots forgotten earlier (marked, manifest gone): a prune that
        was interrupted, or a forget without ``--prune``. Folders without the mark are left alone:
        they may be backups in progress."""
        notes = []
        for folder, files in sorted(self.folders().items()):
            if FORGOTTEN in files and MANIFEST_NAME not in files:
                n = _delete_folder(self.snapshot_store(folder))
                notes.append(f"removed the data of forgotten snapshot {folder} ({n} files)")
        return notes


def _delete_folder(sub: Store) -> int:
    """Delete a forgotten snapshot's files, its FORGOTTEN mark last (so an interrupted delete
    is finished by the next prune), then its empty local folders."""
    paths = [info.path for info in sub.list("") if info.path != FORGOTTEN]
    for path in paths:
        sub.delete(path)
    sub.delete(FORGOTTEN)
    root = sub.local_path("")
    if root and os.path.isdir(root):
        for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda t: -len(t[0])):
            with contextlib.suppress(OSError):  # not empty: not ours to remove
                os.rmdir(dirpath)
    return len(paths)


@dataclass
class CheckReport:
    uri: str
    problems: list[RepoProblem] = field(default_factory=list)
    snapshots: int = 0
    files_checked: int = 0
    bytes_checked: int = 0
    #: not problems: folders without a manifest (a backup in progress or interrupted; forgotten
    #: snapshots whose data a prune has not removed yet)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "ok": self.ok, "snapshots": self.snapshots, "filesChecked": self.files_checked,
                "bytesChecked": self.bytes_checked, "problems": [p.to_dict() for p in self.problems],
                "notes": list(self.notes)}


def check_repository(repo: Repository, *, read_data: bool = False, key: Any = None) -> CheckReport:
    """Every chain: manifests parse, parents exist and match, every listed file is there with its
    size; with ``read_data`` every file is read, its sha256 checked and every record validated
    (encrypted snapshots: decrypted with ``key``, an ArchiveKey; without it only checksums, noted)."""
    from spruce.archive.verify import verify_archive

    report = CheckReport(uri=repo.store.uri)
    folders = repo.folders()
    snaps = repo.snapshots()
    report.snapshots = len(snaps)
    for path, why in sorted(repo.unreadable.items()):
        report.problems.append(RepoProblem(path.split("/")[1], path, "ManifestInvalid", why))
    for folder, files in sorted(folders.items()):
        if MANIFEST_NAME not in files:
            report.notes.append(f"{SNAPSHOTS}/{folder}: " + (
                "a forgotten snapshot whose data `forget --prune` has not removed yet" if FORGOTTEN in files
                else "no manifest: a backup in progress, or one that was interrupted (not a snapshot)"))
    for snap in snaps:
        try:
            repo.chain(snap, snaps)
        except ChainBroken as exc:
            report.problems.append(RepoProblem(snap.id, f"{snap.path}/{MANIFEST_NAME}", "ChainBroken", str(exc)))
        present = folders.get(snap.id, {})
        m = snap.manifest
        listed = [(f.path, f.bytes) for f in m.files] + [(t.path, t.bytes) for t in m.tombstone_files]
        if read_data:
            try:
                vr = verify_archive(repo.snapshot_store(snap.id), key=key)
            except ArchiveKeyError as exc:  # a snapshot made with another key: its checksums all the same
                report.notes.append(f"{snap.path}: {exc}")
                vr = verify_archive(repo.snapshot_store(snap.id))
            if not vr.records_read:
                report.notes.append(f"{snap.path}: encrypted, and no key was given: only checksums were checked")
            report.files_checked += vr.files_checked
            report.bytes_checked += vr.bytes_checked
            report.problems.extend(RepoProblem(snap.id, f"{snap.path}/{p.path}", p.kind, p.message)
                                   for p in vr.problems)
            continue
        for path, size in listed:
            report.files_checked += 1
            if path not in present:
                report.problems.append(RepoProblem(snap.id, f"{snap.path}/{path}", "MissingFile",
                                                   f"{snap.path}/{path}: listed in the manifest but not found"))
            elif present[path] != size:
                report.problems.append(RepoProblem(snap.id, f"{snap.path}/{path}", "ChecksumMismatch",
                                                   f"{snap.path}/{path}: {present[path]} bytes, the manifest "
                                                   f"says {size}"))
    return report
