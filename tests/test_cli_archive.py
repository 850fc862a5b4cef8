"""The archive commands in a real subprocess (``python -m spruce``): export, verify, inspect,
restore and jobs. Exit 0 on success, 1 with one ``error:`` line and no traceback on failure,
2 on a usage error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import spruce
from spruce import jobs as spruce_jobs


def run(data: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SPRUCE_DATA"}
    env.update({"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"})
    return subprocess.run([sys.executable, "-m", "spruce", "--data", str(data), *args], capture_output=True,
                          text=True, env=env, timeout=120)


def ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr + p.stdout
    return p.stdout


def failed(p: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 1, exactly one line on stderr, starting with 'error:', naming ``words``; no traceback."""
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr + p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def usage(p: subprocess.CompletedProcess) -> None:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and "Usage" in p.stderr


def make_data(data: Path, counts: dict[str, int], dim: int = 4) -> dict[str, dict[str, tuple]]:
    c = spruce.Client(data)
    c.create_index("docs", dimension=dim)
    idx = c.Index("docs")
    rng = np.random.default_rng(0)
    for ns, n in counts.items():
        x = rng.standard_normal((n, dim)).astype(np.float32)
        for start in range(0, n, 10_000):
            idx.upsert([{"id": f"{ns or 'd'}-{i}", "values": x[i], "metadata": {"i": i}}
                        for i in range(start, min(n, start + 10_000))], namespace=ns)
    content = dump(c, "docs")
    c.engine.close()
    return content


def dump(c, name: str) -> dict[str, dict[str, tuple]]:
    out: dict[str, dict[str, tuple]] = {}
    with c.Index(name)._index.snapshot() as snap:
        for ns in snap.namespaces():
            for b in snap.iter_batches(ns):
                for r in b.records():
                    out.setdefault(ns, {})[r.id] = (r.values.tobytes(), json.dumps(r.metadata, sort_keys=True))
    return out


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x04
    path.write_bytes(bytes(data))


def test_export_verify_inspect_restore_jobs(tmp_path: Path) -> None:
    data, arch = tmp_path / "data", tmp_path / "arch"
    content = make_data(data, {"": 49, "ns a": 19})

    out = ok(run(data, "export", "docs", str(arch)))
    export_id = re.search(r"export id (exp-[\w-]+)", out).group(1)
    assert f"download: file://{arch}/manifest.json" in out and "68" in out
    assert json.loads((arch / "manifest.json").read_text())["export_id"] == export_id

    assert ok(run(data, "verify", str(arch))).startswith("OK")
    out = ok(run(data, "inspect", str(arch)))
    for word in ("__default__", "ns a", "49", "19", "68", export_id, "snapshot"):
        assert word in out, word

    out = ok(run(data, "restore", str(arch), "copy"))
    assert "restored 68 records" in out
    out = ok(run(data, "jobs", "list"))
    assert export_id in out and "import" in out and out.count("Completed") == 2
    out = ok(run(data, "jobs", "show", export_id))
    assert "Completed" in out and "recordsExported" in out and "68" in out
    c = spruce.Client(data)
    try:
        assert dump(c, "copy") == content
    finally:
        c.engine.close()

    # a byte flipped: verify names exactly the bad file(s), restore fails with one line
    parts = sorted(arch.rglob("part-*"))
    assert len(parts) == 2
    flip(parts[0])
    p = run(data, "verify", str(arch))
    assert p.returncode == 1 and "Traceback" not in p.stderr
    bad = [line for line in p.stderr.splitlines() if line.startswith("BAD")]
    assert len(bad) == 1 and str(parts[0].relative_to(arch)) in bad[0] and "ChecksumMismatch" in bad[0]
    flip(parts[1])
    p = run(data, "verify", str(arch))
    bad = [line for line in p.stderr.splitlines() if line.startswith("BAD")]
    assert p.returncode == 1 and len(bad) == 2
    assert {b.split()[1].rstrip(":") for b in bad} == {str(x.relative_to(arch)) for x in parts}

    line = failed(run(data, "restore", str(arch), "broken"), "sha256", parts[0].name)
    assert "failed" in line
    out = run(data, "jobs", "list").stdout
    import_id = re.findall(r"(imp-[\w-]+)", out)[-1]
    p = run(data, "jobs", "show", import_id)
    assert p.returncode == 1 and "Failed" in p.stdout  # a failed job shows, and says so by its exit code
    c = spruce.Client(data)
    try:
        assert not c.has_index("broken")
    finally:
        c.engine.close()

    (arch / "manifest.json").unlink()
    failed(run(data, "restore", str(arch), "x"), "manifest")
    p = run(data, "verify", str(arch))
    assert p.returncode == 1 and "ArchiveIncomplete" in p.stderr


def test_export_no_wait_runs_in_a_detached_worker(tmp_path: Path) -> None:
    data, arch = tmp_path / "data", tmp_path / "arch"
    content = make_data(data, {"": 20_000, "b": 5_000}, dim=32)
    out = ok(run(data, "export", "docs", str(arch), "--format", "parquet", "--no-wait"))
    job_id = out.strip()
    assert re.fullmatch(r"exp-[\w-]+", job_id)
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        p = run(data, "jobs", "show", job_id)  # works while the worker owns the folder (read-only)
        status = re.search(r"status\s+│?\s*(\w+)", p.stdout)
        assert p.returncode == 0 and status, (p.stdout, p.stderr)
        seen.append(status.group(1))
        if seen[-1] in ("Completed", "Failed", "Cancelled"):
            break
        time.sleep(0.1)
    assert seen[-1] == "Completed", seen
    assert set(seen) <= {"Pending", "InProgress", "Completed"}
    assert "records" in ok(run(data, "verify", str(arch)))
    c = spruce.Client(data)  # the worker released the folder
    try:
        d = c.describe_export(job_id)
        assert d.records_exported == 25_000 and d.download_url.endswith("manifest.json")
        c.Index("copy").upsert_from_file(str(arch))
        assert dump(c, "copy") == content
    finally:
        c.engine.close()


def test_jobs_cancel_and_resume(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_data(data, {"": 100})
    c = spruce.Client(data)  # this process owns the folder, as a --no-wait worker would
    try:
        pending = spruce_jobs.start_export(c.engine, "docs", str(tmp_path / "a"), manager=c.jobs, run=False)
        out = ok(run(data, "jobs", "list"))
        assert pending.id in out and "another process" in out
        assert "cancel requested" in ok(run(data, "jobs", "cancel", pending.id))
        failed(run(data, "jobs", "cancel", "exp-nope"), "not found")
        # the owner honours the request, even before the job started
        c.jobs.resume(pending.id)
        assert c.describe_export(pending.id).status == "Cancelled"
        other = spruce_jobs.start_export(c.engine, "docs", str(tmp_path / "b"), manager=c.jobs, run=False)
    finally:
        c.engine.close()
    assert not (tmp_path / "a" / "manifest.json").exists()
    out = ok(run(data, "jobs", "show", pending.id))
    assert "Cancelled" in out
    failed(run(data, "jobs", "resume", pending.id), "Cancelled")
    assert "Cancelled" in ok(run(data, "jobs", "cancel", other.id))  # not running anywhere: at once
    failed(run(data, "jobs", "show", "imp-nope"), "not found")


def test_restore_continue_mode_exits_1_when_records_were_rejected(tmp_path: Path) -> None:
    data, src = tmp_path / "data", tmp_path / "in.jsonl"
    lines = [json.dumps({"id": f"r{i}", "values": [i, 1.5, -0.0]}) for i in range(10)]
    lines[3] = json.dumps({"id": "r3", "values": [1, 2]})
    src.write_text("\n".join(lines) + "\n")
    p = run(data, "restore", str(src), "t", "--error-mode", "continue")
    assert p.returncode == 1 and "Traceback" not in p.stderr + p.stdout
    text = p.stdout + p.stderr
    assert "restored 9 records" in text and "1 record(s) rejected" in text
    rejects = Path(re.search(r"see (\S+\.rejects\.jsonl)", text).group(1))
    assert json.loads(rejects.read_text())["line"] == 4
    failed(run(data, "restore", str(src), "t2"), "in.jsonl", "line 4", "values")


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cases = [
        ("export", "docs"),
        ("export", "docs", "d", "--format", "xml"),
        ("export", "docs", "d", "--compression-level", "12"),
        ("restore", "a"),
        ("restore", "a", "b", "--error-mode", "bogus"),
        ("restore", "a", "b", "--on-conflict", "maybe"),
        ("restore", "a", "b", "--namespace-map", "no-equals-sign"),
        ("verify",),
        ("jobs", "show"),
        ("jobs", "frobnicate"),
    ]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda a: run(data / "x", *a), cases))
    for args, p in zip(cases, results, strict=True):
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        usage(p)
