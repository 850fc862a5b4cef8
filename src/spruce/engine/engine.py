"""The embedded engine: a data folder holding one SQLite-backed index per subfolder.

One process owns a data folder at a time (an exclusive lock file), because
each process keeps the search matrices in memory and would not see another
process's writes. Use ``spruce serve`` to share an index between processes.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from spruce.engine.index import Index
from spruce.errors import AlreadyExists, FailedPrecondition, NotFound, SpruceError
from spruce.records import IndexConfig, make_index_config, validate_index_name

DEFAULT_DATA_DIR = "./spruce-data"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """--data DIR, else $SPRUCE_DATA, else ./spruce-data."""
    return Path(data_dir or os.environ.get("SPRUCE_DATA") or DEFAULT_DATA_DIR).expanduser().absolute()


class DataDirLocked(SpruceError):
    """Another process owns this data folder. ``pid`` and ``job`` name the holder (``job`` when
    it is a detached worker running one job), so callers can say how to proceed."""

    def __init__(self, data_dir: Path, pid: int | None = None, job: str | None = None, advice: str = "") -> None:
        self.data_dir, self.pid, self.job = data_dir, pid, job
        who = "another spruce process"
        if pid is not None:
            who = f"spruce process {pid}" + (f" (a worker running job {job})" if job else "")
        #: the message without the caller's way forward
        self.bare = f"data folder {data_dir} is in use by {who}; one process owns a data folder at a time"
        super().__init__(self.bare + advice)


#: Set in a detached worker's environment: the job it runs, written into the lock file.
WORKER_JOB_ENV = "SPRUCE_WORKER_JOB"


def _lock_holder(path: Path) -> tuple[int | None, str | None]:
    """(pid, job) that the holder of the lock file wrote into it, as far as readable."""
    try:
        info = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None, None
    if not isinstance(info, dict):
        return None, None
    pid, job = info.get("pid"), info.get("job")
    return (pid if isinstance(pid, int) else None), (job if isinstance(job, str) else None)


_registry: dict[Path, Engine] = {}
_registry_lock = threading.Lock()


class Engine:
    """All indexes of one data folder. Use ``Engine.open`` to share one per process."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, *, durability: str = "process") -> None:
        self.data_dir = resolve_data_dir(data_dir)
        self.durability = durability
        # owner-only: folders 0700, files 0600 (records, job state and rejects are the user's data)
        created = not self.data_dir.exists()
        (self.data_dir / "indexes").mkdir(mode=0o700, parents=True, exist_ok=True)
        if created:
            os.chmod(self.data_dir, 0o700)
        fd = os.open(self.data_dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._lock_file = os.fdopen(fd, "a+")  # held for the engine's life
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise DataDirLocked(self.data_dir, *_lock_holder(self.data_dir / ".lock")) from None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        holder = {"pid": os.getpid(), "job": os.environ.get(WORKER_JOB_ENV) or None}
        self._lock_file.write(orjson.dumps(holder).decode())
        self._lock_file.flush()
        self._indexes: dict[str, Index] = {}
        self._mutex = threading.RLock()
        self._users = 0  # clients holding this engine (``acquire``/``release``)
        self.closed = False
        for trash in (self.data_dir / "indexes").glob(".*"):
            shutil.rmtree(trash, ignore_errors=True)

    @classmethod
    def open(cls, data_dir: str | os.PathLike[str] | None = None) -> Engine:
        """The process-wide engine for a data folder (created on first use)."""
        path = resolve_data_dir(data_dir)
        with _registry_lock:
            eng = _registry.get(path)
            if eng is None or eng._lock_file.closed:
                eng = _registry[path] = cls(path)
            return eng

    @classmethod
    def acquire(cls, data_dir: str | os.PathLike[str] | None = None) -> Engine:
        """``open``, counted: the engine closes when its last client ``release``s it."""
        eng = cls.open(data_dir)
        with eng._mutex:
            eng._users += 1
        return eng

    def release(self) -> bool:
        """One client is done with this engine; close it when it was the last. True if closed."""
        with self._mutex:
            self._users -= 1
            if self._users > 0:
                return False
        self.close()
        return True

    def close(self) -> None:
        with self._mutex:
            self.closed = True
            for idx in self._indexes.values():
                idx.close()
            self._indexes.clear()
            if not self._lock_file.closed:
                self._lock_file.close()
        with _registry_lock:
            if _registry.get(self.data_dir) is self:
                del _registry[self.data_dir]

    def _dir(self, name: str) -> Path:
        return self.data_dir / "indexes" / name

    def create_index(self, name: str, *, dimension: int | None = None, metric: str | None = None,
                     vector_type: str | None = None, spec: dict[str, Any] | None = None,
                     tags: dict[str, str] | None = None, deletion_protection: str | None = None,
                     initializing_job: str | None = None) -> Index:
        """Create an index whole or not at all. ``initializing_job`` marks it as being filled by
        that restore job (state ``Initializing``) until ``Index.mark_ready``."""
        cfg = make_index_config(name, dimension=dimension, metric=metric, vector_type=vector_type,
                                spec=spec, tags=tags, deletion_protection=deletion_protection)
        cfg.initializing_job = initializing_job
        cfg.created_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        with self._mutex:
            final = self._dir(name)
            if final.exists():
                raise AlreadyExists(f"index {name!r} already exists")
            staging = self.data_dir / "indexes" / f".creating-{uuid.uuid4().hex}"
            staging.mkdir(mode=0o700)
            Index.initialize(str(staging), cfg)
            os.rename(staging, final)  # the index appears whole or not at all
            return self.index(name)

    def index(self, name: str) -> Index:
        with self._mutex:
            if self.closed:
                raise FailedPrecondition(f"the engine of {self.data_dir} was closed (and its lock released); "
                                         "open a new client")
            idx = self._indexes.get(name)
            if idx is None:
                validate_index_name(name)
                path = self._dir(name)
                if not (path / "index.db").exists():
                    raise NotFound(f"index {name!r} not found")
                idx = self._indexes[name] = Index(str(path), durability=self.durability)
            return idx

    def has_index(self, name: str) -> bool:
        return (self._dir(name) / "index.db").exists() if name and "/" not in name else False

    def list_indexes(self) -> list[IndexConfig]:
        root = self.data_dir / "indexes"
        names = sorted(p.name for p in root.iterdir() if not p.name.startswith(".") and (p / "index.db").exists())
        return [self.index(n).config for n in names]

    def describe_index(self, name: str) -> IndexConfig:
        return self.index(name).config

    def configure_index(self, name: str, *, deletion_protection: str | None = None,
                        tags: dict[str, str] | None = None) -> IndexConfig:
        from spruce.records import validate_deletion_protection, validate_tags

        if deletion_protection is not None:
            validate_deletion_protection(deletion_protection)
        if tags is not None:
            tags = validate_tags({k: v for k, v in tags.items()})
        return self.index(name).configure(deletion_protection=deletion_protection, tags=tags)

    def delete_index(self, name: str) -> None:
        with self._mutex:
            idx = self.index(name)
            if idx.config.deletion_protection == "enabled":
                raise FailedPrecondition(
                    f"index {name!r} has deletion protection enabled; disable it with configure first")
            idx.close(persist=False)
            del self._indexes[name]
            trash = self.data_dir / "indexes" / f".deleting-{uuid.uuid4().hex}"
            os.rename(self._dir(name), trash)  # gone atomically; the files go after
            shutil.rmtree(trash, ignore_errors=True)
