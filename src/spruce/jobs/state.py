"""Job state: what a job is doing, persisted atomically so it outlives the process.

One JSON file per job under ``<data>/jobs/``. It holds no credentials:
storage URIs are recorded credential-free and secrets come from the
environment's credential chain at run time.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import MISSING, asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from spruce.errors import IntegrityError, InvalidArgument, NotFound

PENDING, IN_PROGRESS, COMPLETED, FAILED, CANCELLED = "Pending", "InProgress", "Completed", "Failed", "Cancelled"
#: Stopped without finishing (its process died, or its client closed): runs again only when
#: asked (``spruce jobs resume``, the same command re-run, or ``spruce serve`` at start-up).
INTERRUPTED = "Interrupted"
#: Its target index was written after it stopped, so resuming would undo those writes: terminal.
SUPERSEDED = "Superseded"
TERMINAL = (COMPLETED, FAILED, CANCELLED, SUPERSEDED)
#: Not running and not ended: a job in one of these states is resumable.
RESUMABLE = (PENDING, IN_PROGRESS, INTERRUPTED)
STATUSES = (PENDING, IN_PROGRESS, INTERRUPTED, COMPLETED, FAILED, CANCELLED, SUPERSEDED)


def _seed_spelling(value: str) -> str:
    """"InProgress" -> "IN_PROGRESS": the seed's spelling, the one a status hashes as."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", value.replace(" ", "")).upper()


class JobStatus(str):
    """A job status that compares equal to Pinecone's spelling ("Completed", "InProgress") and to
    the seed's ("COMPLETED", "IN_PROGRESS").

    One hash cannot match two spellings, so it hashes as the seed's upper-case one: the seed's
    poll loop ``while d.status not in {"COMPLETED", "FAILED"}`` ends, and dict keys written from
    the seed find it. ``==`` is also true for Pinecone's spelling, but a set or dict written with
    that spelling does not match; compare with ``==`` (or use ``str(status)``) there.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return _seed_spelling(self) == _seed_spelling(other)
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return hash(_seed_spelling(self))


#: What a job id can look like (ours are ``exp-YYYYMMDDHHMMSS-xxxxxxxx``); anything else is not found.
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_job_id(kind: str) -> str:
    prefix = {"export": "exp", "copy": "cpy", "backup": "bak"}.get(kind, "imp")
    return f"{prefix}-{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(4)}"


@dataclass
class JobState:
    """The persisted record of one export or import job."""

    id: str
    kind: str  # "export" | "import"
    index: str
    uri: str  # credential-free storage URI
    status: str = PENDING
    options: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=now)
    started_at: str | None = None
    finished_at: str | None = None
    percent_complete: float = 0.0
    records_total: int | None = None
    records_done: int = 0
    records_rejected: int = 0
    bytes_done: int = 0
    files_done: int = 0
    files_total: int | None = None
    error: str | None = None
    download_url: str | None = None
    download_urls: dict[str, str] | None = None
    download_expires_at: str | None = None
    snapshot_point: int | None = None
    attempts: int = 0
    #: When each later attempt started (a resume), oldest first.
    resumed_at: list[str] = field(default_factory=list)
    #: Why the job stopped when Interrupted or Superseded.
    reason: str | None = None
    #: Imports: records left alone because the target already held them (on_conflict skip), or
    #: held a newer write than this job's start (on_conflict overwrite never replaces those).
    records_skipped: int = 0
    records_kept_newer: int = 0
    #: Imports with a selection (namespaces, ids, filter): records of the source it left out.
    records_skipped_by_selection: int = 0
    #: Dry-run imports: what the restore would do, per namespace (see spruce.jobs.dryrun).
    dry_run_report: dict[str, Any] | None = None
    #: Imports: the target index's write sequence number when the job first started writing.
    #: Records written after it (by anyone but the job) are never overwritten, and a resume is
    #: refused once the index was written after the job's last commit.
    target_seq: int | None = None
    cancel_requested: bool = False
    rejects_path: str | None = None
    notes: list[str] = field(default_factory=list)
    #: Copies: per namespace, the source cursor after the last committed page, records copied,
    #: and the target's counts then (a resume compares them: see spruce.sources.copy).
    #: Selective imports: the files that selected nothing, so committed nothing (spruce.jobs.restore).
    checkpoint: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def public(self) -> dict[str, Any]:
        """The status as users see it, in Pinecone's camelCase (as bulk import reports it)."""
        d: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "index": self.index,
            "uri": self.uri,
            "status": self.status,
            "percentComplete": round(self.percent_complete, 2),
            "createdAt": self.created_at,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "error": self.error,
            "bytesWritten" if self.kind == "export" else "bytesRead": self.bytes_done,
            "recordsExported" if self.kind == "export" else "recordsImported": self.records_done,
            "recordsTotal": self.records_total,
            "filesDone": self.files_done,
            "filesTotal": self.files_total,
            "attempts": self.attempts,
            "resumedAt": self.resumed_at,
            "reason": self.reason,
            "notes": list(self.notes),
            "options": self.options,
        }
        if self.kind == "import":
            d["recordsRejected"] = self.records_rejected
            d["recordsSkipped"] = self.records_skipped
            d["recordsKeptNewer"] = self.records_kept_newer
            d["recordsSkippedBySelection"] = self.records_skipped_by_selection
            d["dryRunReport"] = self.dry_run_report
            d["rejectsPath"] = self.rejects_path
        if self.kind == "export":
            d["snapshotPoint"] = self.snapshot_point
            d["downloadUrl"] = self.download_url
            d["downloadUrls"] = self.download_urls
            d["downloadExpiresAt"] = self.download_expires_at
        return d


class JobStore:
    """Job files in a folder; each write is temp file + fsync + rename, so a crash never
    leaves a torn state file."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _path(self, job_id: str) -> Path:
        if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):  # NUL, '/', '..', 300 chars: no such job
            shown = job_id if isinstance(job_id, str) and len(job_id) <= 80 else f"{str(job_id)[:80]}..."
            raise NotFound(f"job {shown!r} not found")
        return self.root / f"{job_id}.json"

    def save(self, state: JobState) -> None:
        path = self._path(state.id)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(orjson.dumps(state.to_dict(), option=orjson.OPT_INDENT_2))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load(self, job_id: str) -> JobState:
        path = self._path(job_id)
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise NotFound(f"job {job_id!r} not found") from None
        except orjson.JSONDecodeError as exc:
            raise IntegrityError(f"job {job_id}: its state file is not valid JSON ({exc})") from None
        problem = _ill_typed(data)
        if problem:  # edited by hand, or by another version: unreadable, never a crash further on
            raise IntegrityError(f"job {job_id}: its state file is unreadable ({problem})")
        return JobState(**{k: v for k, v in data.items() if k in JobState.__dataclass_fields__})

    def all(self) -> list[JobState]:
        """Every readable job; an unreadable file is skipped, so one bad file never fails a
        listing or the server's start-up."""
        out = []
        for p in sorted(self.root.glob("*.json")):
            try:
                out.append(self.load(p.stem))
            except (NotFound, IntegrityError):
                continue
        out.sort(key=lambda s: str(s.created_at or ""))  # any stored value sorts, never a 500
        return out

    def side_file(self, job_id: str, suffix: str) -> Path:
        return self._path(job_id).with_suffix(suffix)

    def write_side_file(self, job_id: str, suffix: str, data: bytes) -> None:
        """A file beside the job's state, owner-only like it."""
        with os.fdopen(os.open(self.side_file(job_id, suffix), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                       "wb") as f:
            f.write(data)

    def request_cancel(self, job_id: str) -> None:
        """Ask the process running a job to cancel it (it owns the job file, so not by editing that)."""
        self.load(job_id)  # NotFound for unknown ids
        self.side_file(job_id, ".cancel").touch(mode=0o600)

    def cancel_requested(self, job_id: str) -> bool:
        return self.side_file(job_id, ".cancel").exists()

    def prune(self, older_than: timedelta, statuses: set[str] | None = None, *,
              dry_run: bool = False) -> list[JobState]:
        """Remove ended jobs (Completed, Failed, Cancelled, Superseded) that ended more than
        ``older_than`` ago, with their side files (rejects, log, cancel request). A job that has
        not ended is never removed: it may still be resumed, or be running in another process."""
        if statuses is not None:
            unended = sorted(set(statuses) - set(TERMINAL))
            if unended:
                raise InvalidArgument(f"only ended jobs ({', '.join(TERMINAL)}) can be pruned, not "
                                      f"{', '.join(unended)}; end one first with `spruce jobs cancel ID`")
        cutoff = datetime.now(UTC) - older_than
        pruned = []
        for s in self.all():
            if s.status not in TERMINAL or (statuses is not None and s.status not in statuses):
                continue
            if _parse_time(s.finished_at or s.created_at) > cutoff:
                continue
            pruned.append(s)
            if not dry_run:
                for p in self.root.glob(f"{s.id}.*"):  # ids hold no dots: exactly this job's files
                    p.unlink(missing_ok=True)
        return pruned


def normalize_status(value: str) -> str:
    """A status in any spelling ("completed", "COMPLETED", "InProgress", "in_progress") as stored."""
    by_key = {s.lower(): s for s in STATUSES}
    key = value.strip().replace("_", "").replace(" ", "").lower()
    if key not in by_key:
        raise InvalidArgument(f"unknown job status {value!r}; one of {', '.join(STATUSES)}")
    return by_key[key]


_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
                                       "dict": (dict,), "list": (list,), "None": (type(None),)}


def _ill_typed(data: Any) -> str | None:
    """Why a loaded job file cannot be a JobState (not an object, a field missing or of the
    wrong type), or None. Checked once here, so every reader can trust the fields' types."""
    if not isinstance(data, dict):
        return f"holds {type(data).__name__}, not an object"
    for name, f in JobState.__dataclass_fields__.items():
        if name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                return f"{name} is missing"
            continue
        allowed = tuple(t for part in str(f.type).split("|") for t in _TYPES[part.strip().split("[")[0]])
        value = data[name]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            return f"{name} is {type(value).__name__}"
    return None


def _parse_time(stamp: str | None) -> datetime:
    try:
        return datetime.fromisoformat((stamp or "").replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)  # unreadable: as old as can be
