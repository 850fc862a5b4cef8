"""What every part of the Pinecone connector shares: the key's variable, the control plane's
default host, archive formats, the integrity errors, and ``_Reporter`` (progress, notes and
cancellation of one run) with ``_Retrier``, the shared retry policy of
``spruce.sources.retry`` waiting, counting and stopping through a reporter."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from spruce.archive.manifest import check_no_credentials
from spruce.errors import IntegrityError, InvalidArgument, JobCancelled
from spruce.sources.retry import Retrier

#: Pinecone's own control plane (the SDK's default).
DEFAULT_CONTROL_HOST = "https://api.pinecone.io"
API_KEY_ENV = "PINECONE_API_KEY"
FORMATS = ("jsonl.gz", "parquet")


class IncompleteExport(IntegrityError):
    """What was exported is not everything the index holds (or no longer matches it)."""


class IncompleteRestore(IntegrityError):
    """After a restore, the target does not hold what the archive does."""


# -- progress ------------------------------------------------------------------------------


@dataclass
class Progress:
    """A snapshot handed to ``on_progress``: enough to draw a progress bar."""

    phase: str  # "listing", "exporting", "checking", "recount", "restoring", "importing", "done"
    records_done: int = 0
    records_total: int | None = None
    bytes_done: int = 0
    namespace: str | None = None
    retries: int = 0
    throttled: int = 0


class _Reporter:
    """Progress, cancellation and notes for one run (a job, or a plain function call)."""

    def __init__(self, on_progress: Callable[[Progress], None] | None = None) -> None:
        self._cb = on_progress
        self._lock = threading.Lock()
        self.p = Progress(phase="starting")
        self.stop = threading.Event()  # set on cancellation or failure: workers stop retrying
        self.notes: list[str] = []

    def _emit(self) -> None:
        if self._cb is not None:
            self._cb(Progress(**vars(self.p)))

    def phase(self, name: str, namespace: str | None = None) -> None:
        with self._lock:
            self.p.phase, self.p.namespace = name, namespace
            self._emit()

    def total(self, n: int | None) -> None:
        with self._lock:
            self.p.records_total = n
            self._emit()

    def advance(self, records: int, nbytes: int) -> None:
        with self._lock:
            self.p.records_done += records
            self.p.bytes_done += nbytes
            self._emit()

    def retried(self, status: int | None) -> None:
        with self._lock:
            self.p.retries += 1
            if status == 429:
                self.p.throttled += 1

    def note(self, text: str) -> None:
        self.notes.append(text)

    def check_cancel(self) -> None:
        if self.stop.is_set():
            raise JobCancelled("cancelled")

    def sleep(self, seconds: float) -> None:
        """Sleep, waking early (and raising) when the run is stopped."""
        if self.stop.wait(max(0.0, seconds)):
            raise JobCancelled("cancelled")


class _Retrier(Retrier):
    """The shared retry policy (``spruce.sources.retry.Retrier``: bounded exponential backoff with
    full jitter, honouring Retry-After), waiting through ``reporter.sleep`` (cancellable),
    checking ``reporter.check_cancel`` before every attempt and counting retries and throttles
    in ``reporter``'s progress. Failures it gives up on are RemoteError (NotFound for 404)."""

    def __init__(self, reporter: _Reporter, **kwargs: Any) -> None:
        super().__init__(sleep=lambda seconds: reporter.sleep(seconds), check_cancel=lambda: reporter.check_cancel(),
                         on_retry=lambda status: reporter.retried(status), **kwargs)
        self.reporter = reporter


def _take(q: queue.Queue[Any], reporter: _Reporter) -> Any:
    while True:
        reporter.check_cancel()
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check_common(api_key: str | None, host: str | None, parallelism: int) -> str:
    key = api_key or ""
    if not key:
        raise InvalidArgument(f"no Pinecone API key: pass api_key or set {API_KEY_ENV}")
    if host:
        if "://" not in host:
            raise InvalidArgument(f"the Pinecone host must be a URL such as {DEFAULT_CONTROL_HOST}, got {host!r}")
        check_no_credentials(host, what="the Pinecone host")
    if isinstance(parallelism, bool) or not isinstance(parallelism, int) or not 1 <= parallelism <= 64:
        raise InvalidArgument(f"parallelism must be an integer from 1 to 64, got {parallelism!r}")
    return key
