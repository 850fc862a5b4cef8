"""``spruce jobs prune`` forgets ended jobs only (with their side files), and ``jobs list`` filters
by status and kind, showing why an interrupted job stopped."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import spruce
from test_cli import ok, run, usage


def _age(data: Path, job_id: str, days: float) -> None:
    """Make a job look as if it ended ``days`` ago (job files are plain JSON)."""
    path = data / "jobs" / f"{job_id}.json"
    state = json.loads(path.read_bytes())
    stamp = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    state["created_at"] = stamp
    if state.get("finished_at"):
        state["finished_at"] = stamp
    path.write_text(json.dumps(state))


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A data folder with an old completed export, an old completed import (with a rejects file),
    an old failed import, a fresh completed export and an interrupted import."""
    data = tmp_path / "data"
    jobs: dict[str, str] = {}
    with spruce.Client(data) as c:
        c.create_index("a", dimension=2)
        c.Index("a").upsert([("v1", [1.0, 2.0]), ("v2", [2.0, 1.0])])
        jobs["old_export"] = c.Index("a").export_index(str(tmp_path / "arc1"), sync=True).export_id
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"id": "x", "values": [1.0, 2.0]}\n{"id": "y", "values": "nope"}\n')
        d = c.Index("a").upsert_from_file(str(bad), sync=False, error_mode="continue")
        jobs["old_import"] = c.wait_import(d.import_id).import_id
        part = next((tmp_path / "arc1").rglob("part-*"))
        raw = part.read_bytes()
        part.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))  # damaged: the restore fails its checksum
        d = c.Index("a").upsert_from_file(str(tmp_path / "arc1"), sync=False)
        jobs["failed"] = d.import_id
        assert c.wait_import(d.import_id).status == "Failed"
        jobs["new_export"] = c.Index("a").export_index(str(tmp_path / "arc2"), sync=True).export_id
        state = c.jobs.store.load(jobs["old_export"])
        state.id, state.status, state.finished_at = "imp-20260101000000-0000beef", "Interrupted", None
        state.kind, state.reason = "import", "the process running it stopped before it finished"
        c.jobs.store.save(state)
        jobs["interrupted"] = state.id
    assert (data / "jobs" / f"{jobs['old_import']}.rejects.jsonl").exists()
    for key in ("old_export", "old_import", "failed", "interrupted"):
        _age(data, jobs[key], days=30)
    return data, jobs


def _ids(data: Path) -> set[str]:
    return {p.stem for p in (data / "jobs").glob("*.json")}


def test_prune_removes_only_old_ended_jobs_and_their_side_files(history) -> None:
    data, jobs = history
    dry = ok(run("--data", str(data), "jobs", "prune", "--dry-run"))
    assert "would prune 3 job(s)" in dry and jobs["old_export"] in dry and jobs["old_import"] in dry
    assert _ids(data) == set(jobs.values())  # a dry run removes nothing
    out = ok(run("--data", str(data), "jobs", "prune", "--older-than", "7d"))
    assert "pruned 3 job(s)" in out
    assert _ids(data) == {jobs["new_export"], jobs["interrupted"]}  # interrupted is kept, however old
    assert not list((data / "jobs").glob(f"{jobs['old_import']}.*"))  # rejects file gone too
    assert (Path(data).parent / "arc2" / "manifest.json").exists()  # archives are never touched
    ok(run("--data", str(data), "jobs", "prune", "--older-than", "0"))
    assert _ids(data) == {jobs["interrupted"]}


def test_prune_by_status(history) -> None:
    data, jobs = history
    out = ok(run("--data", str(data), "jobs", "prune", "--older-than", "0", "--status", "FAILED"))
    assert "pruned 1 job(s)" in out and _ids(data) == set(jobs.values()) - {jobs["failed"]}


def test_prune_refuses_unended_statuses_and_bad_durations(history) -> None:
    data, jobs = history
    p = run("--data", str(data), "jobs", "prune", "--status", "interrupted")
    usage(p)
    assert "only ended jobs" in p.stderr and "spruce jobs cancel" in p.stderr
    for bad in ("7 days", "-1d", "d", "7"):
        p = run("--data", str(data), "jobs", "prune", "--older-than", bad)
        usage(p)
        assert "--older-than" in p.stderr
    usage(run("--data", str(data), "jobs", "prune", "--status", "Finished"))
    assert _ids(data) == set(jobs.values())


def test_list_filters_by_status_and_kind_and_shows_the_reason(history) -> None:
    data, jobs = history
    out = ok(run("--data", str(data), "jobs", "list", "--status", "interrupted"))
    assert jobs["interrupted"] in out and jobs["old_export"] not in out
    assert "stopped before it finished" in out and f"spruce jobs resume {jobs['interrupted']}" in out
    out = ok(run("--data", str(data), "jobs", "list", "--kind", "export"))
    assert jobs["old_export"] in out and jobs["new_export"] in out and jobs["old_import"] not in out
    out = ok(run("--data", str(data), "jobs", "list", "--kind", "import", "--status", "Completed"))
    assert jobs["old_import"] in out and jobs["interrupted"] not in out and jobs["failed"] not in out
    usage(run("--data", str(data), "jobs", "list", "--status", "done"))


def test_prune_over_host_is_refused(tmp_path: Path) -> None:
    p = run("--host", "http://127.0.0.1:9", "jobs", "prune")
    assert p.returncode == 2 and "data folder" in p.stderr


def test_prune_on_an_empty_folder(tmp_path: Path) -> None:
    assert "pruned 0 job(s)" in ok(run("--data", str(tmp_path / "none"), "jobs", "prune"))

