"""verify(): re-read a whole archive and report every problem, file by file.

An encrypted archive is verified with its key as any other (every segment authenticated, every
record decoded and validated), after its manifest's HMAC. Without the key only the stored bytes
can be checked (size and sha256 of the ciphertext, against the manifest): the report says so
(``records_read`` False, and a note).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spruce.archive.manifest import MANIFEST_NAME, Manifest
from spruce.archive.naming import PART_PATH_RE
from spruce.archive.reader import ArchiveReader, SourceFile, check_file_bytes, corrupt, read_data_file
from spruce.archive.tombstones import TOMBSTONE_PATH_RE, check_tombstone_bytes, read_tombstones
from spruce.errors import (
    ArchiveIncomplete,
    ChecksumMismatch,
    CorruptRecord,
    DecryptionFailed,
    IntegrityError,
    ManifestInvalid,
    ManifestTampered,
    MissingFile,
    RecordCountMismatch,
    ValidationError,
)
from spruce.storage.base import Store

if TYPE_CHECKING:
    from spruce.archive.keys import ArchiveKey

_KINDS: dict[str, type[IntegrityError]] = {
    cls.__name__: cls
    for cls in (ArchiveIncomplete, ManifestInvalid, MissingFile, ChecksumMismatch, RecordCountMismatch,
                CorruptRecord, ManifestTampered, DecryptionFailed)
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
    #: the archive is encrypted (its files' checksums are of the ciphertext)
    encrypted: bool = False
    #: every record was decoded and validated (False: only sizes and checksums were checked)
    records_read: bool = True
    notes: list[str] = field(default_factory=list)

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
                "badFiles": self.bad_files, "orphans": list(self.orphans), "encrypted": self.encrypted,
                "recordsRead": self.records_read, "notes": list(self.notes)}

    def raise_for_problems(self) -> None:
        """Raise the first problem as its IntegrityError, its message counting the others."""
        if self.problems:
            first = self.problems[0]
            more = f" (and {len(self.problems) - 1} more problems)" if len(self.problems) > 1 else ""
            raise _KINDS.get(first.kind, IntegrityError)(first.message + more)


def verify_archive(store: Store, *, batch_size: int = 4096, key: ArchiveKey | None = None,
                   read_data: bool | None = None) -> VerifyReport:
    """Check the manifest, then every file: presence, size, sha256, record count, schema, every record.

    Encrypted archives: with ``key`` the manifest's HMAC is checked (a ManifestTampered problem)
    and every file decrypted; a wrong key raises WrongKey. Without it only sizes and checksums of
    the stored ciphertext are checked, unless ``read_data`` is True (ArchiveLocked). ``read_data``
    False checks only sizes and checksums, for any archive.
    """
    report = VerifyReport(uri=store.uri)
    reader = ArchiveReader(store, key=key)
    try:
        manifest = reader.manifest
        cipher = reader.cipher  # WrongKey raises: a wrong key is not a problem of the archive
    except (ArchiveIncomplete, ManifestInvalid) as e:
        report.problems.append(Problem(MANIFEST_NAME, type(e).__name__, str(e)))
        return report
    report.manifest = manifest
    report.encrypted = cipher is not None
    report.records_read = read_data is not False
    if cipher is not None and cipher.locked:
        if read_data:
            cipher.require()  # ArchiveLocked
        report.records_read = False
        report.notes.append("the archive is encrypted and no key was given: records were not decrypted, only the "
                            "size and sha256 of every stored (encrypted) file were checked, and the manifest is "
                            "not authenticated")
    for f in reader.files():
        report.files_checked += 1
        problem = (_verify_file(store, f, manifest, batch_size, report) if report.records_read
                   else _check_bytes_only(store, f))
        if problem is not None:
            report.problems.append(problem)
        else:
            report.bytes_checked += f.bytes or 0
    for tomb in manifest.tombstone_files:  # an incremental snapshot's deletions
        report.files_checked += 1
        try:
            if report.records_read:
                read_tombstones(store, tomb, cipher=cipher)
            else:
                check_tombstone_bytes(store, tomb)
        except IntegrityError as e:
            report.problems.append(Problem(tomb.path, type(e).__name__, str(e)))
        else:
            report.bytes_checked += tomb.bytes
    listed = {f.path for f in manifest.files} | {t.path for t in manifest.tombstone_files}
    report.orphans = sorted(info.path for info in store.list("") if info.path not in listed
                            and (PART_PATH_RE.fullmatch(info.path) or TOMBSTONE_PATH_RE.fullmatch(info.path)))
    return report


def _check_bytes_only(store: Store, f: SourceFile) -> Problem | None:
    try:
        check_file_bytes(store, f)
    except IntegrityError as e:
        return Problem(f.path, type(e).__name__, str(e))
    return None


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
