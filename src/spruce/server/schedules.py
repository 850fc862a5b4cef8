"""Scheduled backups: ``spruce serve --config spruce.toml`` with ``[[schedule]]`` entries::

    [[schedule]]
    name = "nightly-a"                # optional; default "INDEX#N"
    index = "a"
    repository = "s3://backups/spruce"
    cron = "0 3 * * *"                # 5 fields, UTC
    full_every = 7                    # optional: every 7th snapshot is full
    format = "jsonl.gz"               # optional: jsonl.gz | jsonl | parquet
    tags = ["nightly"]                # optional; "scheduled" is always added
    keep_last = 7                     # optional: keep_last/hourly/daily/weekly/monthly/yearly, keep_tag

Guarantees: one backup job per due time (an ordinary job, in ``spruce jobs list`` with progress);
retention (forget --prune of this index's snapshots, chains spared) only after a successful backup;
a failed backup is retried with backoff (30 s, 60 s, 120 s) and never followed by a forget, so earlier
snapshots stay untouched. Runs missed while the server was down are not made up. The clock is
injectable (``now``, ``sleep``) so tests drive a scheduler without waiting.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from croniter import croniter

from spruce.archive.manifest import FORMATS
from spruce.archive.repository import Repository
from spruce.archive.retention import Decision, Policy
from spruce.errors import InvalidArgument, NotFound, SpruceError
from spruce.jobs.backup import TAG_CHARS, start_backup
from spruce.storage import open_store
from spruce.storage.uri import parse_storage_uri, redact_uri

__all__ = ["SCHEDULED_TAG", "TICK_ENV", "Schedule", "Scheduler", "load_config", "parse_config"]

log = logging.getLogger("spruce.schedules")

SCHEDULED_TAG = "scheduled"
#: Seconds before each retry of a failed backup; after the last, the schedule waits for its next due time.
RETRY_BACKOFF = (30.0, 60.0, 120.0)
#: TEST HOOK, not a feature: with SPRUCE_SCHEDULE_TICK_SECONDS=N the default clock runs 60/N times
#: faster than the wall clock, so each N real seconds is one cron minute (and backoffs shrink alike).
TICK_ENV = "SPRUCE_SCHEDULE_TICK_SECONDS"
_KEEP = {"keep_last": "last", "keep_hourly": "hourly", "keep_daily": "daily", "keep_weekly": "weekly",
         "keep_monthly": "monthly", "keep_yearly": "yearly"}
_KEYS = ("name", "index", "repository", "cron", "full_every", "format", "tags", *_KEEP, "keep_tag")
_TAG = re.compile(f"[A-Za-z0-9][{TAG_CHARS}]{{0,127}}")

Now = Callable[[], datetime]
Sleep = Callable[[float, threading.Event], None]  # sleep(seconds, stop): returns early once stop is set


@dataclass(frozen=True)
class Schedule:
    name: str
    index: str
    repository: str
    cron: str
    full_every: int | None = None
    format: str = "jsonl.gz"
    tags: tuple[str, ...] = (SCHEDULED_TAG,)
    policy: Policy = field(default_factory=Policy)

    def next_after(self, t: datetime) -> datetime:
        return croniter(self.cron, t.astimezone(UTC)).get_next(datetime).astimezone(UTC)


def load_config(path: str | os.PathLike[str]) -> list[Schedule]:
    """Parse a config file; InvalidArgument naming the file, the entry and the key when it is wrong."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise InvalidArgument(f"{p}: cannot read the config: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidArgument(f"{p}: not a valid TOML file: {exc}") from None
    return parse_config(doc, where=str(p))


def parse_config(doc: Mapping[str, Any], where: str = "config") -> list[Schedule]:
    for key in doc:
        if key != "schedule":
            raise InvalidArgument(f"{where}: unknown key {key!r}: the config holds [[schedule]] entries only")
    entries = doc.get("schedule", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidArgument(f"{where}: 'schedule' must be [[schedule]] tables")
    out = [_entry(e, n, f"{where}: schedule {n}") for n, e in enumerate(entries, 1)]
    seen: dict[str, int] = {}
    for n, s in enumerate(out, 1):
        if s.name in seen:
            raise InvalidArgument(f"{where}: schedule {n}, key 'name': {s.name!r} is already the name of "
                                  f"schedule {seen[s.name]}")
        seen[s.name] = n
    return out


def _entry(e: dict[str, Any], n: int, at: str) -> Schedule:
    def bad(key: str, why: str) -> InvalidArgument:
        return InvalidArgument(f"{at}, key {key!r}: {why}")

    def text(key: str) -> str:
        v = e[key]
        if not isinstance(v, str) or not v.strip():
            raise bad(key, "must be a non-empty string")
        return v.strip()

    def count(key: str, low: int) -> int:
        v = e[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise bad(key, f"must be an integer >= {low}, not {v!r}")
        return v

    def strings(key: str) -> list[str]:
        v = e[key]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise bad(key, "must be a list of strings")
        return v

    for key in e:
        if key not in _KEYS:
            raise bad(key, f"unknown key (known: {', '.join(_KEYS)})")
    for key in ("index", "repository", "cron"):
        if key not in e:
            raise bad(key, "is required")
    index, repository, cron = text("index"), text("repository"), text("cron")
    try:
        parse_storage_uri(repository)
    except InvalidArgument as exc:
        raise bad("repository", f"not a usable folder or storage URI: {exc}") from None
    if len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise bad("cron", f"{cron!r} is not a 5-field cron expression (minute hour day month weekday), "
                  "e.g. '0 3 * * *'")
    try:
        croniter(cron, datetime.now(UTC)).get_next(datetime)
    except Exception:  # croniter's CroniterBadDateError: e.g. February 31st
        raise bad("cron", f"{cron!r} never comes due") from None
    fmt = text("format") if "format" in e else "jsonl.gz"
    if fmt not in FORMATS:
        raise bad("format", f"must be one of {', '.join(FORMATS)}, not {fmt!r}")
    tags = strings("tags") if "tags" in e else []
    for t in tags:
        if not _TAG.fullmatch(t):
            raise bad("tags", f"tag {t!r}: a tag is 1 to 128 of the characters {TAG_CHARS}, "
                      "starting with a letter or digit")
    keep: dict[str, Any] = {attr: count(key, -1) for key, attr in _KEEP.items() if key in e}
    if "keep_tag" in e:
        keep["tags"] = tuple(strings("keep_tag"))
    return Schedule(name=text("name") if "name" in e else f"{index}#{n}", index=index, repository=repository,
                    cron=cron, full_every=count("full_every", 1) if "full_every" in e else None, format=fmt,
                    tags=tuple(dict.fromkeys([*tags, SCHEDULED_TAG])), policy=Policy(**keep))


def default_clock() -> tuple[Now, Sleep]:
    """The wall clock; or, with the test hook TICK_ENV set, one that runs 60/N times faster."""
    raw = os.environ.get(TICK_ENV)
    try:
        tick = float(raw) if raw else 0.0
    except ValueError:
        tick = 0.0
    if not tick > 0:
        def wall_sleep(seconds: float, stop: threading.Event) -> None:
            stop.wait(min(max(seconds, 0.0), 30.0))  # wakes to re-read the clock: it may have jumped

        return lambda: datetime.now(UTC), wall_sleep
    scale, origin, start = 60.0 / tick, datetime.now(UTC), time.monotonic()

    def now() -> datetime:
        return origin + timedelta(seconds=(time.monotonic() - start) * scale)

    def sleep(seconds: float, stop: threading.Event) -> None:
        stop.wait(max(seconds, 0.0) / scale)

    return now, sleep


@dataclass
class _State:
    schedule: Schedule
    next_run: datetime | None = None
    retry_at: datetime | None = None
    retries: int = 0  # retries made for the current due time
    runs: int = 0
    last_run: datetime | None = None
    last_job: str | None = None
    last_status: str | None = None
    last_error: str | None = None

    @property
    def wake(self) -> datetime:
        assert self.next_run is not None
        return self.retry_at or self.next_run


def _outcome(job_id: str | None, status: str) -> str:
    return f"job {job_id} {status}" if job_id else f"{status} before a job started"


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Scheduler:
    """Runs the schedules' backups in one daemon thread: ``start()``, ``status()``, ``stop()``."""

    def __init__(self, engine: Any, schedules: Sequence[Schedule], *, manager: Any = None,
                 now: Now | None = None, sleep: Sleep | None = None,
                 backoff: Sequence[float] = RETRY_BACKOFF) -> None:
        from spruce.jobs.api import jobs_for

        if (now is None) != (sleep is None):
            raise ValueError("pass both now and sleep, or neither")
        self.engine = engine
        self.manager = manager or jobs_for(engine)
        self._now, self._sleep = (now, sleep) if now is not None and sleep is not None else default_clock()
        self._backoff = tuple(backoff)
        self._states = [_State(s) for s in schedules]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None or not self._states:
            return
        t0 = self._now()
        with self._lock:
            for st in self._states:  # missed runs are not made up: the next due time is the first
                st.next_run = st.schedule.next_after(t0)
        self._thread = threading.Thread(target=self._loop, name="spruce-schedules", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop promptly; a backup job running now is left to the job manager (the server's
        shutdown interrupts it, resumable)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"name": st.schedule.name, "index": st.schedule.index,
                     "repository": redact_uri(st.schedule.repository), "cron": st.schedule.cron,
                     "full_every": st.schedule.full_every, "runs": st.runs, "last_run": _iso(st.last_run),
                     "last_job": st.last_job, "last_status": st.last_status, "last_error": st.last_error,
                     "next_run": _iso(st.next_run and st.wake), "retries": st.retries} for st in self._states]

    # -- the thread -----------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = self._now()
            due = sorted((st for st in self._states if st.wake <= now), key=lambda st: st.wake)
            if not due:
                self._sleep((min(st.wake for st in self._states) - now).total_seconds(), self._stop)
                continue
            for st in due:
                if self._stop.is_set():
                    return
                try:
                    self._run(st)
                except Exception as exc:  # never let one run kill the thread
                    log.exception("schedule %s: %s", st.schedule.name, exc)
                    with self._lock:
                        st.retry_at, st.next_run = None, st.schedule.next_after(self._now())

    def _run(self, st: _State) -> None:
        s, started, job_id, kind = st.schedule, self._now(), None, "backup"
        try:
            full = self._want_full(s)
            kind = "full backup" if full else "backup"
            job = start_backup(self.engine, s.index, s.repository, full=full, format=s.format, tags=s.tags,
                               sync=False, manager=self.manager)
            job_id = job.id
            with self._lock:
                st.last_job, st.last_status, st.last_error = job_id, "InProgress", None
            final = self._await(job_id)
            if final is None:
                return  # stopping: the job is the manager's to interrupt
            status, error = str(final.status), final.error
        except Exception as exc:  # NotFound index, unusable repository, JobConflict...: a failure, retried
            status, error = "Failed", str(exc) if isinstance(exc, SpruceError | OSError) else repr(exc)
        where = f"schedule {s.name}: {kind} of {s.index} into {redact_uri(s.repository)}"
        with self._lock:
            st.runs, st.last_run, st.last_status, st.last_error = st.runs + 1, started, status, error
            st.last_job = job_id
        if status == "Completed":
            retained = self._retain(st)
            with self._lock:
                st.retries, st.retry_at, st.next_run = 0, None, s.next_after(max(self._now(), st.wake))
            log.info("%s: %s%s; next run %s", where, _outcome(job_id, status), retained, _iso(st.next_run))
        elif status == "Failed" and st.retries < len(self._backoff):
            delay = self._backoff[st.retries]
            with self._lock:
                st.retries, st.retry_at = st.retries + 1, self._now() + timedelta(seconds=delay)
            log.warning("%s: %s (%s); retry %d of %d in %gs, earlier snapshots untouched", where,
                        _outcome(job_id, status), error, st.retries, len(self._backoff), delay)
        else:
            with self._lock:
                st.retries, st.retry_at, st.next_run = 0, None, s.next_after(max(self._now(), st.next_run or started))
            log.warning("%s: %s (%s); no more retries, earlier snapshots untouched; next run %s", where,
                        _outcome(job_id, status), error, _iso(st.next_run))

    def _await(self, job_id: str) -> Any:
        while True:
            state = self.manager.wait(job_id, timeout=0.5)
            if state.terminal:
                return state
            if self._stop.is_set():
                return None

    def _want_full(self, s: Schedule) -> bool:
        """full_every N: full when this snapshot would be the Nth since (and counting) the last full."""
        if s.full_every is None:
            return False
        try:
            snaps = Repository.open(open_store(s.repository)).snapshots(index=s.index)
        except NotFound:
            return True  # no repository yet: the first snapshot is full anyway
        incrementals = 0
        for snap in reversed(snaps):
            if snap.full:
                break
            incrementals += 1
        return incrementals + 1 >= s.full_every

    def _retain(self, st: _State) -> str:
        """forget --prune by the schedule's policy, for its own index only (chains spared)."""
        s = st.schedule
        if s.policy.empty():
            return ""
        try:
            repo = Repository.open(open_store(s.repository))
            d = repo.plan_forget(s.policy)
            mine = Decision(keep=[x for x in d.keep if x.index == s.index],
                            remove=[x for x in d.remove if x.index == s.index])
            notes = repo.forget(mine, prune=True) if mine.remove else []
        except (SpruceError, OSError) as exc:
            with self._lock:
                st.last_error = f"retention failed: {exc}"
            return f"; retention failed: {exc}"
        if not notes:
            return f"; retention kept all {len(mine.keep)} snapshot(s)"
        return f"; retention removed {len(mine.remove)} snapshot(s), kept {len(mine.keep)}"
