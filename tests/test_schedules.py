"""Scheduled backups (``spruce serve --config``): config parsing, the scheduler driven by a test
clock (runs, full_every, retention, retries after failures), and a real server with a schedule.

No assertion depends on how long anything takes: the scheduler's clock is a test clock that moves
only when the test lets the scheduler sleep, and the real server is polled with generous deadlines.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import spruce
from spruce.archive.repository import Repository, SnapshotInfo
from spruce.errors import InvalidArgument
from spruce.server.schedules import SCHEDULED_TAG, TICK_ENV, Schedule, Scheduler, load_config, parse_config
from spruce.storage import open_store

START = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)
DEADLINE = 60.0  # seconds: generous, never the point of a test


# -- a clock the test drives ------------------------------------------------------------


class StepClock:
    """Time moves only when the scheduler sleeps, and it sleeps only when the test calls ``tick``."""

    def __init__(self, start: datetime) -> None:
        self._t = start
        self._cond = threading.Condition()
        self.entered = 0  # sleeps the scheduler has started
        self.granted = 0  # sleeps the test has let through
        self.requested: list[float] = []  # what each sleep asked for, in order

    def now(self) -> datetime:
        with self._cond:
            return self._t

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        with self._cond:
            self.entered += 1
            self.requested.append(seconds)
            self._cond.notify_all()
            while self.granted < self.entered and not stop.is_set():
                self._cond.wait(0.05)
            if self.granted >= self.entered:
                self._t += timedelta(seconds=seconds)

    def _await_sleeping(self) -> None:
        end = time.monotonic() + DEADLINE
        while self.entered <= self.granted:
            left = end - time.monotonic()
            assert left > 0, "the scheduler did not come back to sleep"
            self._cond.wait(left)

    def tick(self) -> None:
        """Let the scheduler's current sleep end, then wait until it sleeps again (its run done)."""
        with self._cond:
            self._await_sleeping()
            self.granted += 1
            self._cond.notify_all()
            self._await_sleeping()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Any]:
    c = spruce.Client(tmp_path / "data")
    c.create_index("a", dimension=3)
    put(c, 0)
    yield c
    c.close()


def put(c: Any, n: int) -> None:
    c.Index("a").upsert([{"id": f"r{n}-{i}", "values": [float(n), float(i), 1.0]} for i in range(5)])


def one(repo: Path, **extra: Any) -> list[Schedule]:
    return parse_config({"schedule": [{"index": "a", "repository": str(repo), "cron": "* * * * *", **extra}]})


def snaps(repo: Path) -> list[SnapshotInfo]:
    return Repository.open(open_store(str(repo))).snapshots(index="a")


@contextmanager
def running(c: Any, schedules: list[Schedule], **kw: Any) -> Iterator[tuple[Scheduler, StepClock]]:
    clock = StepClock(START)
    sched = Scheduler(c.engine, schedules, manager=c.jobs, now=clock.now, sleep=clock.sleep, **kw)
    sched.start()
    try:
        yield sched, clock
    finally:
        sched.stop()
        assert sched._thread is not None and not sched._thread.is_alive()


def with_ancestors(kept: list[SnapshotInfo], every: list[SnapshotInfo]) -> set[str]:
    by_id = {s.id: s for s in every}
    out: set[str] = set()
    for s in kept:
        cur: SnapshotInfo | None = s
        while cur is not None and cur.id not in out:
            out.add(cur.id)
            cur = by_id.get(cur.parent) if cur.parent else None
    return out


# -- the config ------------------------------------------------------------------------------


GOOD = """
[[schedule]]
index = "a"
repository = "{repo}"
cron = "0 3 * * *"

[[schedule]]
name = "hourly-b"
index = "b"
repository = "s3://bucket/backups"
cron = "*/15 * * * 1-5"
full_every = 4
format = "parquet"
tags = ["nightly", "scheduled"]
keep_last = 3
keep_hourly = 24
keep_daily = 7
keep_weekly = 4
keep_monthly = 12
keep_yearly = -1
keep_tag = ["release"]
"""


def test_good_config(tmp_path: Path) -> None:
    path = tmp_path / "spruce.toml"
    path.write_text(GOOD.format(repo=tmp_path / "repo"))
    a, b = load_config(path)
    assert (a.name, a.index, a.repository, a.cron) == ("a#1", "a", str(tmp_path / "repo"), "0 3 * * *")
    assert (a.full_every, a.format, a.tags, a.policy.empty()) == (None, "jsonl.gz", (SCHEDULED_TAG,), True)
    assert (b.name, b.full_every, b.format, b.tags) == ("hourly-b", 4, "parquet", ("nightly", SCHEDULED_TAG))
    p = b.policy
    assert (p.last, p.hourly, p.daily, p.weekly, p.monthly, p.yearly, p.tags) == (3, 24, 7, 4, 12, -1, ("release",))
    assert a.next_after(datetime(2026, 1, 1, 3, 0, tzinfo=UTC)) == datetime(2026, 1, 2, 3, 0, tzinfo=UTC)
    assert load_config(_write(tmp_path, "")) == []


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


OK_ENTRY = 'index = "a"\nrepository = "/tmp/r"\ncron = "* * * * *"\n'
BAD = [  # (lines replacing/adding to a good second entry, the key the error must name)
    ('repository = "/tmp/r"\ncron = "* * * * *"\n', "index"),
    ('index = "a"\ncron = "* * * * *"\n', "repository"),
    ('index = "a"\nrepository = "/tmp/r"\n', "cron"),
    (OK_ENTRY + "keep_lats = 2\n", "keep_lats"),
    (OK_ENTRY.replace("* * * * *", "* * * *"), "cron"),
    (OK_ENTRY.replace("* * * * *", "* * * * * *"), "cron"),
    (OK_ENTRY.replace("* * * * *", "61 * * * *"), "cron"),
    (OK_ENTRY.replace("* * * * *", "0 0 31 2 *"), "cron"),
    (OK_ENTRY.replace('"* * * * *"', "5"), "cron"),
    (OK_ENTRY.replace('"a"', '""'), "index"),
    (OK_ENTRY.replace('"/tmp/r"', "7"), "repository"),
    (OK_ENTRY.replace('"/tmp/r"', '"ftp://host/x"'), "repository"),
    (OK_ENTRY + "full_every = 0\n", "full_every"),
    (OK_ENTRY + 'full_every = "2"\n', "full_every"),
    (OK_ENTRY + "full_every = true\n", "full_every"),
    (OK_ENTRY + 'format = "csv"\n', "format"),
    (OK_ENTRY + 'tags = "nightly"\n', "tags"),
    (OK_ENTRY + 'tags = ["bad tag"]\n', "tags"),
    (OK_ENTRY + "keep_last = -2\n", "keep_last"),
    (OK_ENTRY + 'keep_daily = "7"\n', "keep_daily"),
    (OK_ENTRY + "keep_weekly = 1.5\n", "keep_weekly"),
    (OK_ENTRY + 'keep_tag = "release"\n', "keep_tag"),
    (OK_ENTRY + 'name = "a#1"\n', "name"),  # the first entry's default name
]


@pytest.mark.parametrize(("entry", "key"), BAD, ids=[f"{k}-{i}" for i, (_, k) in enumerate(BAD)])
def test_bad_entry_names_file_entry_and_key(tmp_path: Path, entry: str, key: str) -> None:
    path = _write(tmp_path, f"[[schedule]]\n{OK_ENTRY}\n[[schedule]]\n{entry}")
    with pytest.raises(InvalidArgument) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and "schedule 2" in msg and f"key {key!r}" in msg, msg


def test_bad_file_and_top_level(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not a valid TOML file"):
        load_config(_write(tmp_path, "[[schedule]\n"))
    with pytest.raises(InvalidArgument, match="unknown key 'schedules'"):
        load_config(_write(tmp_path, f"[[schedules]]\n{OK_ENTRY}"))
    with pytest.raises(InvalidArgument, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_credentials_in_a_repository_never_echoed(tmp_path: Path) -> None:
    path = _write(tmp_path, "[[schedule]]\n" + OK_ENTRY.replace("/tmp/r", "s3://AKIAXX:topsecret@bucket/x"))
    with pytest.raises(InvalidArgument) as err:
        load_config(path)
    assert "key 'repository'" in str(err.value) and "topsecret" not in str(err.value)


# -- the scheduler with a test clock ------------------------------------------------------


def test_every_minute_three_ticks_then_keep_last(client: Any, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    made: list[SnapshotInfo] = []
    with running(client, one(repo, keep_last=2)) as (sched, clock):
        assert snaps_or_none(repo) is None  # nothing runs at start-up
        for n in range(1, 4):
            put(client, n)
            clock.tick()
            now = snaps(repo)
            made += [s for s in now if s.id not in {m.id for m in made}]
            assert len(made) == n
        assert clock.requested[:3] == [30.0, 60.0, 60.0]  # to 12:01, 12:02, 12:03
        [st] = sched.status()
    assert [s.full for s in made] == [True, False, False]
    assert all(SCHEDULED_TAG in s.tags for s in made)
    assert [s.parent for s in made[1:]] == [made[0].id, made[1].id]
    # keep_last = 2 keeps the newest two; chain protection keeps every ancestor they need
    assert {s.id for s in snaps(repo)} == with_ancestors(made[-2:], made)
    assert st["runs"] == 3 and st["last_status"] == "Completed" and st["last_error"] is None
    assert st["last_run"] == "2026-03-01T12:03:00Z" and st["next_run"] == "2026-03-01T12:04:00Z"
    jobs = [j for j in client.jobs.list("backup")]
    assert len(jobs) == 3 and all(j.status == "Completed" for j in jobs) and st["last_job"] == jobs[-1].id


def manifests(repo: Path) -> dict[str, bytes]:
    return {s.id: (repo / s.path / "manifest.json").read_bytes() for s in snaps(repo)}


def snaps_or_none(repo: Path) -> list[SnapshotInfo] | None:
    return snaps(repo) if (repo / "repository.json").exists() else None


def test_full_every_2(client: Any, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    with running(client, one(repo, full_every=2)) as (_, clock):
        for n in range(4):
            put(client, n + 1)
            clock.tick()
    assert [s.full for s in snaps(repo)] == [True, False, True, False]


def test_retention_removes_what_no_kept_snapshot_needs(client: Any, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    with running(client, one(repo, full_every=2, keep_last=1)) as (_, clock):
        clock.tick()
        clock.tick()
        f1, i1 = snaps(repo)  # keep_last 1 keeps i1, and f1 as its parent
        assert (f1.full, i1.parent) == (True, f1.id)
        clock.tick()
        [f2] = snaps(repo)
    assert f2.full and f2.id not in (f1.id, i1.id)
    assert sorted(p.name for p in (repo / "snapshots").iterdir()) == [f2.id]  # pruned, not only forgotten


@pytest.mark.parametrize("how", ["index-deleted", "job-fails"])
def test_failure_is_retried_with_backoff_and_touches_nothing(client: Any, tmp_path: Path, how: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    planned: list[str] = []
    real_plan = Repository.plan_forget

    def spy(self: Repository, policy: Any) -> Any:
        planned.append(self.store.uri)
        return real_plan(self, policy)

    monkeypatch.setattr(Repository, "plan_forget", spy)
    with running(client, one(repo, full_every=1, keep_last=1)) as (sched, clock):
        clock.tick()
        clock.tick()
        before = manifests(repo)
        files_before = sorted(str(p.relative_to(repo)) for p in repo.rglob("*"))
        assert len(before) == 1 and len(planned) == 2  # keep_last 1 removed the first
        if how == "index-deleted":
            client.delete_index("a")
        else:
            import spruce.jobs.backup as backup_module

            def broken(*args: Any, **kw: Any) -> None:
                raise OSError("disk on fire")

            monkeypatch.setattr(backup_module, "_run", broken)
        clock.tick()  # 12:03: fails
        statuses = [sched.status()[0]]
        for _ in range(3):  # three retries, each failing
            clock.tick()
            statuses.append(sched.status()[0])
        # backoff 30 s, 60 s, 120 s through the clock; then the next due time (12:07) after 12:06:30
        assert clock.requested[3:7] == [30.0, 60.0, 120.0, 30.0]
        assert [s["retries"] for s in statuses] == [1, 2, 3, 0]
        assert [s["next_run"] for s in statuses] == ["2026-03-01T12:03:30Z", "2026-03-01T12:04:30Z",
                                                     "2026-03-01T12:06:30Z", "2026-03-01T12:07:00Z"]
        assert all(s["last_status"] == "Failed" for s in statuses) and statuses[-1]["runs"] == 6
        assert ("'a'" if how == "index-deleted" else "disk on fire") in statuses[-1]["last_error"]
        # earlier snapshots untouched, no forget after a failure
        assert manifests(repo) == before and len(planned) == 2
        assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*")) == files_before
        failed = [j for j in client.jobs.list("backup") if j.status == "Failed"]
        assert len(failed) == (0 if how == "index-deleted" else 4)  # a deleted index fails before any job
        # and the schedule recovers at its next due time
        if how == "index-deleted":
            client.create_index("a", dimension=3)
        else:
            monkeypatch.undo()
            monkeypatch.setattr(Repository, "plan_forget", spy)
        put(client, 9)
        clock.tick()
        [latest] = snaps(repo)
        assert latest.id not in before and len(planned) == 3
        assert sched.status()[0]["last_status"] == "Completed"


def test_stop_is_prompt_and_no_schedules_no_thread(client: Any, tmp_path: Path) -> None:
    empty = Scheduler(client.engine, [], manager=client.jobs)
    empty.start()
    assert empty._thread is None and empty.status() == []
    empty.stop()
    sched = Scheduler(client.engine, one(tmp_path / "repo", cron="0 3 * * *"), manager=client.jobs)
    sched.start()  # the wall clock: the thread sleeps until 03:00 unless stopped
    sched.stop(timeout=DEADLINE)
    assert sched._thread is not None and not sched._thread.is_alive()


# -- spruce serve --config --------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None, **kw: Any) -> Any:
    cmd = [sys.executable, "-c", "from spruce.cli import main; main()", *args]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SPRUCE_")}
    full_env.update({"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb", **(env or {})})
    return cmd, full_env


def test_serve_with_a_bad_config_exits_1_with_one_line(tmp_path: Path) -> None:
    bad = _write(tmp_path, f"[[schedule]]\n{OK_ENTRY}full_every = 0\n")
    cmd, env = _cli("serve", "--data", str(tmp_path / "data"), "--port", "1", "--config", str(bad))
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert "schedule 1" in lines[0] and "full_every" in lines[0] and "bad.toml" in lines[0]
    assert not (tmp_path / "data").exists()  # nothing was opened: the config is checked first


def test_serve_runs_schedules_and_reports_them(tmp_path: Path) -> None:
    from serverutil import _wait_healthy, free_port

    data, repo, key = tmp_path / "data", tmp_path / "repo", "sched-key-123"
    c = spruce.Client(data)
    c.create_index("a", dimension=3)
    put(c, 0)
    c.close()
    cfg = tmp_path / "spruce.toml"
    cfg.write_text(f'[[schedule]]\nname = "every-minute"\nindex = "a"\nrepository = "{repo}"\n'
                   'cron = "* * * * *"\nkeep_last = 50\n')
    log_path = tmp_path / "server.log"
    for _attempt in range(3):  # a port found free can be taken before the server binds it
        port = free_port()
        cmd, env = _cli("serve", "--data", str(data), "--port", str(port), "--config", str(cfg),
                        "--log-level", "warning", env={"SPRUCE_API_KEY": key, TICK_ENV: "1"})
        with log_path.open("w") as log:
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        if _wait_healthy(url, time.monotonic() + DEADLINE, lambda p=proc: p.poll() is None):
            break
        proc.kill()
        proc.wait()
    else:
        pytest.fail(f"the server did not start: {log_path.read_text()}")
    try:
        headers = {"Api-Key": key}
        deadline = time.monotonic() + DEADLINE
        while True:
            status = httpx.get(f"{url}/schedules", headers=headers, timeout=10).json()
            if (status[0]["runs"] >= 2 and status[0]["last_status"] == "Completed") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        [st] = status
        assert st["name"] == "every-minute" and st["runs"] >= 2 and st["last_status"] == "Completed", st
        assert st["repository"].endswith(str(repo)) and st["next_run"] > st["last_run"]
        found = snaps(repo)
        assert len(found) >= 2 and found[0].full and not found[1].full
        job = httpx.get(f"{url}/jobs/{st['last_job']}", headers=headers, timeout=10).json()
        assert job["id"] == st["last_job"]
        assert httpx.get(f"{url}/schedules", timeout=10).status_code == 401
        assert httpx.get(f"{url}/schedules", headers={"Api-Key": "wrong"}, timeout=10).status_code == 401
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log_text = log_path.read_text()
    assert "schedule every-minute: backup of a into" in log_text and "Completed" in log_text, log_text
    assert key not in log_text
    assert proc.returncode is not None
