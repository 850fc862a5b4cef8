"""Runs export and import jobs in background threads, persists their state, recovers them.

A data folder is owned by one process (the engine's lock), so any job found
``InProgress`` when the manager opens belongs to a process that died: it is
marked ``Interrupted`` and runs again only when asked (``resume``, the same
command re-run, or ``spruce serve`` at start-up). A resume is refused, and the
job ``Superseded``, when its target was written after it stopped (each job
kind registers that check). One job at a time writes an index.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from spruce.engine import Engine
from spruce.engine.index import writing_as
from spruce.errors import (
    FailedPrecondition,
    JobCancelled,
    JobConflict,
    JobInterrupted,
    JobSuperseded,
    SpruceError,
)
from spruce.jobs.state import (
    CANCELLED,
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    INTERRUPTED,
    PENDING,
    RESUMABLE,
    SUPERSEDED,
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


#: Per job kind: why a stopped job must not resume (its target was written since), or None.
RESUME_CHECKS: dict[str, Callable[[JobManager, JobState], str | None]] = {}
#: Per job kind: undo what a stopped job left behind when it is cancelled without running
#: (an export's parts, an index a restore created). Returns notes for the job's history.
DISCARDS: dict[str, Callable[[JobManager, JobState], list[str]]] = {}
#: Job kinds that write an index of this data folder: one such job per index at a time.
WRITER_KINDS = {"import", "restore"}
#: Options that a job adds as it runs: not part of "the same command".
_RUNTIME_OPTIONS = frozenset({"created_index"})


def register_runner(kind: str, runner: Runner, *, resume_check: Callable[..., str | None] | None = None,
                    discard: Callable[..., list[str]] | None = None, writes_index: bool = False) -> None:
    RUNNERS[kind] = runner
    if resume_check is not None:
        RESUME_CHECKS[kind] = resume_check
    if discard is not None:
        DISCARDS[kind] = discard
    if writes_index:
        WRITER_KINDS.add(kind)


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """``module.name``, imported when first called."""
    def call(*args: Any, **kwargs: Any) -> Any:
        import importlib

        return getattr(importlib.import_module(module), name)(*args, **kwargs)
    call.__name__ = name
    return call


def same_command(a: JobState, b: JobState) -> bool:
    """Two jobs started by the same command: same kind, source, target and options."""
    def opts(s: JobState) -> dict[str, Any]:
        return {k: v for k, v in s.options.items() if k not in _RUNTIME_OPTIONS}
    return (a.kind, a.index, a.uri) == (b.kind, b.index, b.uri) and opts(a) == opts(b)


_SAVE_INTERVAL = 0.5
_CANCEL_POLL = 0.2


class JobContext:
    """What a running job sees: its state, progress reporting, and cancellation."""

    def __init__(self, manager: JobManager, state: JobState) -> None:
        self.manager = manager
        self.engine = manager.engine
        self.state = state
        self.cancel_event = threading.Event()
        self.interrupt_reason: str | None = None
        self.failure: SpruceError | None = None
        self._last_save = 0.0
        self._last_cancel_poll = 0.0
        self._lock = threading.Lock()

    def storage_options(self) -> dict[str, Any]:
        """Persisted storage options plus any secrets given to this process (never persisted)."""
        return {**self.state.options.get("storage", {}), **self.manager.secrets.get(self.state.id, {})}

    def check_cancel(self) -> None:
        if self.interrupt_reason is not None:
            raise JobInterrupted(self.interrupt_reason)
        if not self.cancel_event.is_set() and time.monotonic() - self._last_cancel_poll >= _CANCEL_POLL:
            # another process (``spruce jobs cancel`` while this one owns the data folder) asks by file
            self._last_cancel_poll = time.monotonic()
            if self.manager.store.cancel_requested(self.state.id):
                self.state.cancel_requested = True
                self.cancel_event.set()
        if self.cancel_event.is_set():
            raise JobCancelled(f"job {self.state.id} was cancelled")

    def progress(self, *, records: int = 0, bytes: int = 0, rejected: int = 0, files: int = 0,
                 skipped: int = 0, kept_newer: int = 0, not_selected: int = 0, force: bool = False) -> None:
        with self._lock:
            s = self.state
            s.records_done += records
            s.bytes_done += bytes
            s.records_rejected += rejected
            s.records_skipped += skipped
            s.records_kept_newer += kept_newer
            s.records_skipped_by_selection += not_selected
            s.files_done += files
            if s.records_total:
                seen = s.records_done + s.records_skipped + s.records_kept_newer + s.records_skipped_by_selection
                s.percent_complete = min(99.99, 100.0 * seen / s.records_total)
            elif s.files_total:
                s.percent_complete = min(99.99, 100.0 * s.files_done / s.files_total)
            t = time.monotonic()
            if force or t - self._last_save >= _SAVE_INTERVAL:
                self._last_save = t
                self.manager.store.save(s)

    def save(self) -> None:
        with self._lock:
            self.manager.store.save(self.state)

    def scrub(self) -> None:
        """Remove every known secret (this job's and the environment's, in every encoding) from
        the state's texts: the one place all job kinds pass before their state is stored."""
        from spruce.storage.secrets import scrub, secret_values

        key = self.manager.keys.get(self.state.id)  # an archive key: its passphrase is scrubbed too
        s, secrets = self.state, secret_values(self.storage_options()) + (key.secret_texts() if key else [])
        s.error = scrub(s.error, secrets)
        s.reason = scrub(s.reason, secrets)
        s.notes = [scrub(n, secrets) or "" for n in s.notes]


class JobManager:
    """One per engine: the registry of jobs in ``<data>/jobs``."""

    _instances: dict[int, JobManager] = {}
    _instances_lock = threading.Lock()

    def __init__(self, engine: Engine, runners: dict[str, Runner]) -> None:
        self.engine = engine
        self.store = JobStore(engine.data_dir / "jobs")
        self._runners = runners
        self._active: dict[str, JobContext] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._mutex = threading.Lock()
        self.secrets: dict[str, dict[str, Any]] = {}
        #: archive keys (spruce.archive.keys.ArchiveKey) per job id: like ``secrets``, memory only
        self.keys: dict[str, Any] = {}
        self._claim = threading.Lock()  # submit: checking for a conflicting job and saving are one step
        self.closed = False

    @classmethod
    def for_engine(cls, engine: Engine, *, auto_resume: bool = False,
                   log: Callable[[str], None] | None = None) -> JobManager:
        """The engine's manager. Opening it marks jobs a dead process left behind Interrupted;
        only ``auto_resume`` (``spruce serve``, which owns its jobs) runs them again, logging
        one line per job through ``log``."""
        # the built-in kinds, imported on first use: opening a folder to list indexes need not
        # load the archive format (pyarrow, jsonschema)
        RUNNERS.setdefault("export", _lazy("spruce.jobs.export", "run_export"))
        RUNNERS.setdefault("import", _lazy("spruce.jobs.restore", "run_import"))
        RESUME_CHECKS.setdefault("import", _lazy("spruce.jobs.restore", "resume_check"))
        DISCARDS.setdefault("import", _lazy("spruce.jobs.restore", "discard"))
        DISCARDS.setdefault("export", _lazy("spruce.jobs.export", "discard"))
        RUNNERS.setdefault("backup", _lazy("spruce.jobs.backup", "run_backup"))
        DISCARDS.setdefault("backup", _lazy("spruce.jobs.backup", "discard"))
        RUNNERS.setdefault("restore", _lazy("spruce.jobs.chain", "run_snapshot_restore"))
        RESUME_CHECKS.setdefault("restore", _lazy("spruce.jobs.restore", "resume_check"))
        DISCARDS.setdefault("restore", _lazy("spruce.jobs.restore", "discard"))
        with cls._instances_lock:
            mgr = cls._instances.get(id(engine))
            if mgr is None or mgr.engine is not engine or mgr.closed:
                mgr = cls._instances[id(engine)] = cls(engine, RUNNERS)
                mgr.recover()
                if auto_resume:
                    mgr.resume_interrupted(log=log)
            return mgr

    # -- lifecycle ------------------------------------------------------------

    def submit(self, state: JobState, *, sync: bool, run: bool = True, secrets: dict[str, Any] | None = None,
               supersede: bool = False, key: Any = None) -> JobState:
        """Persist a new job and run it (in this thread when sync; not at all when not run,
        for a detached worker process to pick up with ``resume``).

        The same command re-run adopts its interrupted job and resumes it instead (unless
        that job is Superseded). A job that writes an index is refused while another job
        writes it, running or interrupted (JobConflict), unless ``supersede`` cancels that one.
        ``secrets`` (storage credentials) and ``key`` (an archive key) stay in this process's memory.
        """
        self._check_open()
        with self._claim:
            adopted = self._adoptable(state)
            if adopted is not None:
                if secrets:
                    self.secrets[adopted.id] = dict(secrets)
                if key is not None:
                    self.keys[adopted.id] = key
                adopted.notes.append(f"{now()}: the same command was run again: resuming this job")
                self.store.save(adopted)
            if adopted is None and state.kind in WRITER_KINDS and not state.options.get("dry_run"):
                # a dry run writes nothing: it neither waits for a writer nor makes one wait
                others = [o for o in self.list() if o.kind in WRITER_KINDS and o.index == state.index
                          and not o.terminal and o.id != state.id and not o.options.get("dry_run")]
                if others and not supersede:
                    o = others[0]
                    running = "running" if self.is_active(o.id) else o.status.lower()
                    raise JobConflict(
                        f"index {state.index!r} is being written by {o.kind} job {o.id} ({running}); "
                        f"one job writes an index at a time: wait for it, or run `spruce jobs cancel {o.id}` "
                        f"or `spruce jobs resume {o.id}` (--supersede cancels it for you)")
                for o in others:
                    self.cancel(o.id)
                    self.wait(o.id, timeout=60)
                    state.notes.append(f"{now()}: superseded job {o.id}, which was cancelled first")
            if adopted is None:
                if secrets:
                    self.secrets[state.id] = dict(secrets)
                if key is not None:
                    self.keys[state.id] = key
                self.store.save(state)
        if adopted is not None:
            return self.resume(adopted.id, sync=sync) if run else adopted
        return self._start(state, sync=sync) if run else state

    def _adoptable(self, state: JobState) -> JobState | None:
        """An earlier job of the same command that stopped unfinished, still resumable."""
        for o in self.list(state.kind):
            if o.id == state.id or o.status not in RESUMABLE or self.is_active(o.id) or not same_command(o, state):
                continue
            if self._superseded(o):
                continue  # marked Superseded: a new job starts
            return o
        return None

    def _superseded(self, s: JobState) -> bool:
        """Mark ``s`` Superseded when its target was written after it stopped."""
        check = RESUME_CHECKS.get(s.kind)
        reason = check(self, s) if check is not None else None
        if reason is None:
            return False
        s.status, s.finished_at, s.reason = SUPERSEDED, now(), reason
        s.notes.append(f"{s.finished_at}: not resumed: {reason}")
        self.store.save(s)
        return True

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
            with tuned_for_jobs(), writing_as(f"{s.kind} job {s.id}"):
                runner(ctx)
            s.status = COMPLETED
            s.percent_complete = 100.0
        except JobCancelled:
            s.status = CANCELLED
            s.error = s.error or "cancelled by the user"
        except JobInterrupted as exc:
            s.status, s.reason = INTERRUPTED, str(exc)
        except SpruceError as exc:
            s.status = FAILED
            s.error = str(exc)
            ctx.failure = exc
        except OSError as exc:  # the file system said no: name the path and the cause
            s.status = FAILED
            s.error = describe_os_error(exc)
            ctx.failure = SpruceError(s.error)
        except Exception as exc:  # a bug: still fail the job visibly, never leave it InProgress
            s.status = FAILED
            s.error = f"internal error: {type(exc).__name__}: {exc}"
            s.notes.append(traceback.format_exc(limit=5)[-2000:])
            ctx.failure = SpruceError(s.error)
        finally:
            s.finished_at = None if s.status == INTERRUPTED else now()
            raw = s.error
            ctx.scrub()
            if ctx.failure is not None and raw != s.error:  # a sync caller sees the scrubbed text too
                ctx.failure.args = (s.error,)
            ctx.save()
            with self._mutex:
                self._active.pop(s.id, None)
                self._threads.pop(s.id, None)

    def recover(self) -> list[str]:
        """Mark the jobs a dead process left running ``Interrupted`` (cancelled ones
        ``Cancelled``); nothing runs again here. Returns the ids touched."""
        touched = []
        for s in self.store.all():
            if s.status not in RESUMABLE or s.id in self._active:
                continue
            if s.cancel_requested or self.store.cancel_requested(s.id):
                touched.append(s.id)
                self._cancel_stopped(s)
                continue
            if s.status == IN_PROGRESS:
                touched.append(s.id)
                s.status = INTERRUPTED
                s.reason = "the process running it stopped before it finished"
                s.notes.append(f"{now()}: interrupted: {s.reason}")
                self.store.save(s)
        return touched

    def resume_interrupted(self, log: Callable[[str], None] | None = None) -> list[str]:
        """Resume every stopped job this process can run (``spruce serve`` at start-up), one
        log line each; a job whose target was written since becomes Superseded instead."""
        resumed = []
        for s in self.store.all():
            if s.status not in RESUMABLE or s.id in self._active or s.kind not in self._runners:
                continue
            try:
                self.resume(s.id, sync=False)
            except JobSuperseded as exc:
                if log:
                    log(f"not resuming {s.kind} job {s.id}: {exc}")
                continue
            resumed.append(s.id)
            if log:
                log(f"resuming {s.kind} job {s.id} ({s.index} <-> {s.uri}), attempt {s.attempts + 1}")
        return resumed

    def resume(self, job_id: str, *, sync: bool = True) -> JobState:
        """Run a stopped job again: an export from a fresh snapshot, an import after its last
        committed file. Refused (JobSuperseded, and the job becomes Superseded) when its
        target was written after it stopped."""
        self._check_open()
        s = self.store.load(job_id)
        if s.id in self._active:
            return self.wait(job_id) if sync else self.describe(job_id)
        if s.terminal:
            raise FailedPrecondition(f"job {job_id} is {s.status}; only interrupted jobs can be resumed")
        if s.kind not in self._runners:
            raise FailedPrecondition(f"job {job_id} is a {s.kind} job, which this process cannot run")
        if self._superseded(s):
            raise JobSuperseded(f"job {job_id} cannot be resumed: {s.reason}; it is now Superseded")
        if s.attempts:
            s.resumed_at.append(now())
            s.notes.append(f"{s.resumed_at[-1]}: resumed (attempt {s.attempts + 1})")
        s.status, s.reason, s.finished_at = PENDING, None, None
        if s.kind == "export":
            s.records_done = s.bytes_done = s.files_done = 0
            s.percent_complete = 0.0
        return self._start(s, sync=sync)

    def _cancel_stopped(self, s: JobState) -> JobState:
        """Cancel a job that is not running: undo what it left behind, then mark it Cancelled."""
        s.cancel_requested = True
        discard = DISCARDS.get(s.kind)
        if discard is not None:
            try:
                s.notes.extend(discard(self, s))
            except SpruceError as exc:
                s.notes.append(f"{now()}: could not clean up after the job: {exc}")
        s.status, s.finished_at = CANCELLED, now()
        s.error = s.error or "cancelled by the user"
        self.store.save(s)
        return s

    def _check_open(self) -> None:
        if self.closed:
            raise FailedPrecondition("this client is closed; open a new one")

    # -- queries --------------------------------------------------------------

    def is_active(self, job_id: str) -> bool:
        """Running in this process. A non-terminal job that is not active was interrupted."""
        with self._mutex:
            return job_id in self._active

    def describe(self, job_id: str) -> JobState:
        with self._mutex:
            ctx = self._active.get(job_id)
            thread = self._threads.get(job_id)
        if ctx is not None:
            if ctx.state.terminal and thread is not None and thread is not threading.current_thread():
                # the job is in its last step (the final save): a caller that sees the end must
                # find it on disk too, or a process exiting now would leave it InProgress
                thread.join(timeout=30)
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
            return self._cancel_stopped(s)
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

    def close(self, timeout: float = 30.0, reason: str = "the client that ran it was closed") -> None:
        """Stop running jobs at their next batch boundary as Interrupted (whole files kept,
        resumable), wait for them, and refuse new ones."""
        with self._mutex:
            self.closed = True
            for ctx in self._active.values():
                ctx.interrupt_reason = reason
            threads = list(self._threads.values())
        for t in threads:
            t.join(timeout=timeout)
        with self._instances_lock:
            if self._instances.get(id(self.engine)) is self:
                del self._instances[id(self.engine)]

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel nothing; wait briefly for running jobs (used in tests and server shutdown)."""
        with self._mutex:
            threads = list(self._threads.values())
        for t in threads:
            t.join(timeout=timeout)


def describe_os_error(exc: OSError) -> str:
    """"PATH: cause" for an OSError, e.g. "/tmp/x/manifest.json: Not a directory"."""
    cause = exc.strerror or type(exc).__name__
    if exc.filename is None:
        return f"{cause}: {exc}" if str(exc) != cause else cause
    return f"{exc.filename}: {cause}"


def describe_public(state: JobState) -> dict[str, Any]:
    return state.public()
