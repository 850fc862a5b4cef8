"""verify(): re-read a whole archive and report every problem, file by file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spruce.archive.manifest import MANIFEST_NAME, Manifest
from spruce.archive.naming import PART_PATH_RE
from spruce.archive.reader import ArchiveReader, SourceFile, corrupt, read_data_file
from spruce.archive.tombstones import TOMBSTONE_PATH_RE, read_tombstones
from spruce.errors import (
    ArchiveIncomplete,
    ChecksumMismatch,
    CorruptRecord,
    IntegrityError,
    ManifestInvalid,
    MissingFile,
    RecordCountMismatch,
    ValidationError,
)
from spruce.storage.base import Store

_KINDS: dict[str, type[IntegrityError]] = {
    cls.__name__: cls
    for cls in (ArchiveIncomplete, ManifestInvalid, MissingFile, ChecksumMismatch, RecordCountMismatch,
                CorruptRecord)
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One bad file: ``kind`` is the IntegrityError class name (e.g. "ChecksumMismatch")."""

    path: str
    kind: str
    message: str


@dataclass(slots=True)
class VerifyReport:
    uri: str
    problems: list[Problem] = field(default_factory=list)
    files_checked: int = 0
    records_checked: int = 0
    bytes_checked: int = 0
    #: Part files present in the store but not in the manifest (left by a crashed run; harmless).
    orphans: list[str] = field(default_factory=list)
    manifest: Manifest | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def bad_files(self) -> list[str]:
        return sorted({p.path for p in self.problems})

    def to_dict(self) -> dict[str, Any]:
        """The report as ``spruce verify --json`` and ``POST /archives/verify`` give it."""
        return {"uri": self.uri, "ok": self.ok, "filesChecked": self.files_checked,
                "recordsChecked": self.records_checked, "bytesChecked": self.bytes_checked,
                "problems": [{"path": p.path, "kind": p.kind, "message": p.message} for p in self.problems],
                "badFiles": self.bad_files, "orphans": list(self.orphans)}

    def raise_for_problems(self) -> None:
        """Raise the first problem as its IntegrityError, its message counting the others."""
        if self.problems:
            first = self.problems[0]
            more = f" (and {len(self.problems) - 1} more problems)" if len(self.problems) > 1 else ""
            raise _KINDS.get(first.kind, IntegrityError)(first.message + more)


def verify_archive(store: Store, *, batch_size: int = 4096) -> VerifyReport:
    """Check the manifest, then every file: presence, size, sha256, record count, schema, every record."""
    report = VerifyReport(uri=store.uri)
    reader = ArchiveReader(store)
    try:
        manifest = reader.manifest
    except (ArchiveIncomplete, ManifestInvalid) as e:
        report.problems.append(Problem(MANIFEST_NAME, type(e).__name__, str(e)))
        return report
    report.manifest = manifest
    for f in reader.files():
        report.files_checked += 1
        problem = _verify_file(store, f, manifest, batch_size, report)
        if problem is not None:
            report.problems.append(problem)
        else:
            report.bytes_checked += f.bytes or 0
    for tomb in manifest.tombstone_files:  # an incremental snapshot's deletions
        report.files_checked += 1
        try:
            read_tombstones(store, tomb)
        except IntegrityError as e:
            report.problems.append(Problem(tomb.path, type(e).__name__, str(e)))
        else:
            report.bytes_checked += tomb.bytes
    listed = {f.path for f in manifest.files} | {t.path for t in manifest.tombstone_files}
    report.orphans = sorted(info.path for info in store.list("") if info.path not in listed
                            and (PART_PATH_RE.fullmatch(info.path) or TOMBSTONE_PATH_RE.fullmatch(info.path)))
    return report


def _verify_file(store: Store, f: SourceFile, manifest: Manifest, batch_size: int,
                 report: VerifyReport) -> Problem | None:
    bad: list[ValidationError] = []
    try:
        for batch in read_data_file(store, f, batch_size=batch_size, dimension=manifest.dimension,
                                    vector_type=manifest.vector_type, on_error=bad.append, strict=True):
            report.records_checked += len(batch)
    except IntegrityError as e:
        return Problem(f.path, type(e).__name__, str(e))
    except ValidationError as e:  # a file-level problem (e.g. a Parquet column of the wrong type)
        return Problem(f.path, "CorruptRecord", str(corrupt(e)))
    if bad:
        first = corrupt(bad[0])
        return Problem(f.path, "CorruptRecord",
                       f"{f.path}: {len(bad)} invalid record{'s' if len(bad) > 1 else ''}; first: {first}")
    return None
