"""Runs export and import jobs in background threads, persists their state, recovers them.

A data folder is owned by one process (the engine's lock), so any job found
``InProgress`` when the manager opens belongs to a process that died: exports
are re-run from a fresh snapshot (never reported Completed with partial data),
imports resume from their last committed file.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from spruce.engine import Engine
from spruce.errors import FailedPrecondition, JobCancelled, SpruceError
from spruce.jobs.state import (
    CANCELLED,
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    PENDING,
    JobState,
    JobStore,
    now,
)
from spruce.jobs.tuning import tuned_for_jobs

Runner = Callable[["JobContext"], None]

#: Job kinds and what runs them. Higher layers add theirs with ``register_runner`` (the
#: connectors in ``spruce.sources`` add "remote-export" and "remote-import"), so this layer
#: never imports upward.
RUNNERS: dict[str, Runner] = {}


def register_runner(kind: str, runner: Runner) -> None:
    RUNNERS[kind] = runner
_SAVE_INTERVAL = 0.5
_CANCEL_POLL = 0.2


class JobContext:
    """What a running job sees: its state, progress reporting, and cancellation."""

    def __init__(self, manager: JobManager, state: JobState) -> None:
        self.manager = manager
        self.engine = manager.engine
        self.state = state
        self.cancel_event = threading.Event()
        self.failure: SpruceError | None = None
        self._last_save = 0.0
        self._last_cancel_poll = 0.0
        self._lock = threading.Lock()

    def storage_options(self) -> dict[str, Any]:
        """Persisted storage options plus any secrets given to this process (never persisted)."""
        return {**self.state.options.get("storage", {}), **self.manager.secrets.get(self.state.id, {})}

    def check_cancel(self) -> None:
        if not self.cancel_event.is_set() and time.monotonic() - self._last_cancel_poll >= _CANCEL_POLL:
            # another process (``spruce jobs cancel`` while this one owns the data folder) asks by file
            self._last_cancel_poll = time.monotonic()
            if self.manager.store.cancel_requested(self.state.id):
                self.state.cancel_requested = True
                self.cancel_event.set()
        if self.cancel_event.is_set():
            raise JobCancelled(f"job {self.state.id} was cancelled")

    def progress(self, *, records: int = 0, bytes: int = 0, rejected: int = 0, files: int = 0,
                 force: bool = False) -> None:
        with self._lock:
            s = self.state
            s.records_done += records
            s.bytes_done += bytes
            s.records_rejected += rejected
            s.files_done += files
            if s.records_total:
                s.percent_complete = min(99.99, 100.0 * s.records_done / s.records_total)
            elif s.files_total:
                s.percent_complete = min(99.99, 100.0 * s.files_done / s.files_total)
            t = time.monotonic()
            if force or t - self._last_save >= _SAVE_INTERVAL:
                self._last_save = t
                self.manager.store.save(s)

    def save(self) -> None:
        with self._lock:
            self.manager.store.save(self.state)


class JobManager:
    """One per engine: the registry of jobs in ``<data>/jobs``."""

    _instances: dict[int, JobManager] = {}
    _instances_lock = threading.Lock()

    def __init__(self, engine: Engine, runners: dict[str, Runner], *, export_recovery: str = "rerun") -> None:
        self.engine = engine
        self.store = JobStore(engine.data_dir / "jobs")
        self._runners = runners
        self._active: dict[str, JobContext] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._mutex = threading.Lock()
        self.export_recovery = export_recovery
        self.secrets: dict[str, dict[str, Any]] = {}

    @classmethod
    def for_engine(cls, engine: Engine, *, auto_resume: bool = True) -> JobManager:
        from spruce.jobs.export import run_export
        from spruce.jobs.restore import run_import

        RUNNERS.setdefault("export", run_export)
        RUNNERS.setdefault("import", run_import)
        with cls._instances_lock:
            mgr = cls._instances.get(id(engine))
            if mgr is None or mgr.engine is not engine:
                mgr = cls._instances[id(engine)] = cls(engine, RUNNERS)
                mgr.recover(resume=auto_resume)
            return mgr

    # -- lifecycle ------------------------------------------------------------

    def submit(self, state: JobState, *, sync: bool, run: bool = True,
               secrets: dict[str, Any] | None = None) -> JobState:
        """Persist a new job and run it (in this thread when sync; not at all when not run,
        for a detached worker process to pick up with ``resume``)."""
        if secrets:
            self.secrets[state.id] = dict(secrets)
        self.store.save(state)
        return self._start(state, sync=sync) if run else state

    def _start(self, state: JobState, *, sync: bool) -> JobState:
        ctx = JobContext(self, state)
        with self._mutex:
            if state.id in self._active:
                raise FailedPrecondition(f"job {state.id} is already running")
            self._active[state.id] = ctx
        if sync:
            self._run(ctx)
            if ctx.failure is not None:
                raise ctx.failure  # sync callers get the job's own error, e.g. ChecksumMismatch
            return ctx.state
        t = threading.Thread(target=self._run, args=(ctx,), name=f"spruce-job-{state.id}", daemon=True)
        with self._mutex:
            self._threads[state.id] = t
        t.start()
        return state

    def _run(self, ctx: JobContext) -> None:
        s = ctx.state
        try:
            if s.cancel_requested or self.store.cancel_requested(s.id):
                s.cancel_requested = True
                raise JobCancelled(f"job {s.id} was cancelled")
            s.status = IN_PROGRESS
            s.started_at = s.started_at or now()
            s.attempts += 1
            ctx.save()
            runner = self._runners.get(s.kind)
            if runner is None:
                raise SpruceError(f"job kind {s.kind!r} has no runner in this process")
            with tuned_for_jobs():
                runner(ctx)
            s.status = COMPLETED
            s.percent_complete = 100.0
        except JobCancelled:
            s.status = CANCELLED
        except SpruceError as exc:
            s.status = FAILED
            s.error = str(exc)
            ctx.failure = exc
        except Exception as exc:  # a bug: still fail the job visibly, never leave it InProgress
            s.status = FAILED
            s.error = f"internal error: {type(exc).__name__}: {exc}"
            s.notes.append(traceback.format_exc(limit=5)[-2000:])
            ctx.failure = SpruceError(s.error)
        finally:
            s.finished_at = now()
            ctx.save()
            with self._mutex:
                self._active.pop(s.id, None)
                self._threads.pop(s.id, None)

    def recover(self, *, resume: bool = True) -> list[str]:
        """Re-run interrupted exports from a fresh snapshot and resume interrupted imports."""
        touched = []
        for s in self.store.all():
            if s.status not in (PENDING, IN_PROGRESS) or s.id in self._active:
                continue
            touched.append(s.id)
            if s.cancel_requested or self.store.cancel_requested(s.id):
                s.status, s.finished_at = CANCELLED, now()
                self.store.save(s)
                continue
            if s.kind not in self._runners:
                continue  # a connector's job kind this process has not loaded: left for one that has
            if s.kind == "export" and self.export_recovery == "fail":
                s.status, s.finished_at = FAILED, now()
                s.error = "interrupted: the process running this export stopped before it completed"
                self.store.save(s)
                continue
            if not resume:
                continue
            s.notes.append(f"{now()}: resumed after the previous run was interrupted")
            if s.kind == "export":
                s.records_done = s.bytes_done = s.files_done = 0
                s.percent_complete = 0.0
            self._start(s, sync=False)
        return touched

    def resume(self, job_id: str, *, sync: bool = True) -> JobState:
        s = self.store.load(job_id)
        if s.terminal:
            raise FailedPrecondition(f"job {job_id} is {s.status}; only interrupted jobs can be resumed")
        if s.id in self._active:
            return self.wait(job_id) if sync else s
        return self._start(s, sync=sync)

    # -- queries --------------------------------------------------------------

    def is_active(self, job_id: str) -> bool:
        """Running in this process. A non-terminal job that is not active was interrupted."""
        with self._mutex:
            return job_id in self._active

    def describe(self, job_id: str) -> JobState:
        with self._mutex:
            ctx = self._active.get(job_id)
        if ctx is not None:
            return ctx.state
        return self.store.load(job_id)

    def list(self, kind: str | None = None) -> list[JobState]:
        states = {s.id: s for s in self.store.all()}
        with self._mutex:
            for job_id, ctx in self._active.items():
                states[job_id] = ctx.state
        return [s for s in sorted(states.values(), key=lambda s: s.created_at) if kind in (None, s.kind)]

    def cancel(self, job_id: str) -> JobState:
        """Request cancellation; a running job stops at its next batch boundary."""
        with self._mutex:
            ctx = self._active.get(job_id)
        if ctx is not None:
            ctx.state.cancel_requested = True
            ctx.cancel_event.set()
            ctx.save()
            return ctx.state
        s = self.store.load(job_id)
        if not s.terminal:
            s.cancel_requested = True
            s.status, s.finished_at = CANCELLED, now()
            self.store.save(s)
        return s

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.05) -> JobState:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            s = self.describe(job_id)
            if s.terminal:
                with self._mutex:
                    t = self._threads.get(job_id)
                if t is not None:
                    t.join(timeout=5)
                return s
            if deadline is not None and time.monotonic() > deadline:
                return s
            time.sleep(poll)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel nothing; wait briefly for running jobs (used in tests and server shutdown)."""
        with self._mutex:
            threads = list(self._threads.values())
        for t in threads:
            t.join(timeout=timeout)


def describe_public(state: JobState) -> dict[str, Any]:
    return state.public()
