"""Every error spruce raises on purpose.

Each class carries the HTTP status and Pinecone error code it maps to, so the
server, the CLI (exit code 1, one line, no traceback) and the client agree on
what went wrong without a translation table per layer.
"""

from __future__ import annotations


class SpruceError(Exception):
    """Base class: an expected failure with a message fit for a user."""

    status: int = 500
    code: str = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(SpruceError):
    status = 400
    code = "INVALID_ARGUMENT"


class ValidationError(InvalidArgument):
    """A record or request field breaks the data model.

    The message always names where the bad value came from (file, line or
    record position, id) and which field, because "invalid vector" alone is
    useless when restoring a million records.
    """

    def __init__(
        self,
        reason: str,
        *,
        field: str | None = None,
        record: int | None = None,
        record_id: str | None = None,
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        self.reason = reason
        self.field = field
        self.record = record
        self.record_id = record_id
        self.file = file
        self.line = line
        super().__init__(self._render())

    def _render(self) -> str:
        where: list[str] = []
        if self.file is not None:
            where.append(self.file)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.record is not None:
            where.append(f"record {self.record}")
        if self.record_id is not None:
            where.append(f"id {self.record_id!r}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        return (", ".join(where) + ": " if where else "") + self.reason

    def located(self, *, file: str | None = None, line: int | None = None,
                record: int | None = None) -> ValidationError:
        """Return a copy that also names the file/line/record it came from."""
        return ValidationError(
            self.reason,
            field=self.field,
            record=record if record is not None else self.record,
            record_id=self.record_id,
            file=file if file is not None else self.file,
            line=line if line is not None else self.line,
        )


class InvalidFilter(InvalidArgument):
    """A metadata filter that does not follow Pinecone's filter language."""


class NotFound(SpruceError):
    status = 404
    code = "NOT_FOUND"


class AlreadyExists(SpruceError):
    status = 409
    code = "ALREADY_EXISTS"


class FailedPrecondition(SpruceError):
    """The request is valid but the target's state forbids it (deletion protection, conflicts)."""

    status = 412
    code = "FAILED_PRECONDITION"


class ConflictError(FailedPrecondition):
    """An import with on_conflict='fail' found ids that already exist in the target."""


class Unauthorized(SpruceError):
    status = 401
    code = "UNAUTHENTICATED"


class Forbidden(SpruceError):
    status = 403
    code = "PERMISSION_DENIED"


class StorageError(SpruceError):
    """The storage backend failed: bad credentials, missing bucket, unreachable endpoint.

    Messages never include secrets; they name the URI (without credentials) and the cause.
    """

    status = 502
    code = "UNAVAILABLE"


class JobCancelled(SpruceError):
    """Raised inside a job's worker when the job was cancelled; never escapes to users."""

    code = "CANCELLED"


class JobInterrupted(BaseException):
    """Raised inside a job's worker when its client closes: the job stops as if its process had
    died (whole files kept, nothing cleaned up) and becomes Interrupted, resumable later.

    A BaseException so that no ``except Exception`` on the way treats it as a failure."""


class JobConflict(ConflictError):
    """Another job is writing the same index: one writing job per index."""

    status = 409
    code = "ABORTED"  # gRPC's code for a concurrency conflict, which Pinecone's error shape uses


class JobSuperseded(ConflictError):
    """A job cannot be resumed: what it would write over was written after it stopped."""

    status = 409
    code = "ABORTED"


# -- archive integrity -------------------------------------------------------


class IntegrityError(SpruceError):
    """An archive is not what its manifest says it is. Never trust, always verify."""

    status = 422
    code = "DATA_LOSS"


class ArchiveIncomplete(IntegrityError):
    """No manifest: the export never committed (it crashed, was cancelled, or is still running)."""


class NotAnArchive(InvalidArgument):
    """The path holds files, or is a file, but is not an archive: not a crashed export either."""


class ManifestInvalid(IntegrityError):
    """The manifest does not parse or does not match the JSON Schema."""


class MissingFile(IntegrityError):
    """A file listed in the manifest is absent."""


class ChecksumMismatch(IntegrityError):
    """A file's sha256 or byte size differs from the manifest."""


class RecordCountMismatch(IntegrityError):
    """A file or namespace holds a different number of records than the manifest says."""


class CorruptRecord(IntegrityError):
    """A data file decodes, but a record in it is malformed."""


class ChainBroken(IntegrityError):
    """A backup snapshot's parent (or an ancestor) is missing, or does not continue its chain."""


class ManifestTampered(ManifestInvalid):
    """An encrypted archive's manifest does not match its HMAC: edited by someone without the key."""


class DecryptionFailed(IntegrityError):
    """An encrypted file's segment fails authentication although the file's bytes match the manifest.

    (A file whose bytes differ from the manifest is a ChecksumMismatch, however it fails.)"""


# -- archive keys --------------------------------------------------------------


class ArchiveKeyError(FailedPrecondition):
    """An encrypted archive cannot be opened with the key given: none, or another one."""


class ArchiveLocked(ArchiveKeyError):
    """The archive is encrypted and no key was given (--key-file, or SPRUCE_ARCHIVE_PASSPHRASE)."""


class WrongKey(ArchiveKeyError):
    """The key given is not the archive's: its fingerprint differs from the manifest's."""
