"""`--host` is one world: verify, inspect and download read the server's storage through the
server, exactly where `--host URL export` wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import spruce
from serverutil import RunningServer, start_server

KEY = "host-mode-key"
CLI = [sys.executable, "-c", "from spruce.cli import main; main()"]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("host") / "data"
    with start_server(data, api_key=KEY) as s:
        yield s


def cli(server: RunningServer, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPRUCE_")}
    env.update({"SPRUCE_API_KEY": KEY, "NO_COLOR": "1", "COLUMNS": "200"})
    return subprocess.run([*CLI, "--host", server.url, *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=cwd)


def ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    return p.stdout


@pytest.fixture(scope="module")
def exported(server: RunningServer) -> str:
    ok(cli(server, "index", "create", "films", "--dimension", "3", "--metric", "euclidean"))
    with spruce.Client(host=server.url, api_key=KEY) as c:
        c.Index("films").upsert([(f"f{i}", [i, 1.0, 2.0], {"i": i}) for i in range(40)])
        c.Index("films").upsert([("n1", [1.0, 1.0, 1.0])], namespace="other")
    doc = json.loads(ok(cli(server, "export", "films", "remote-bk1", "--json")))
    assert doc["status"] == "Completed"
    return doc["id"]


def test_verify_and_inspect_read_the_servers_storage(server: RunningServer, exported: str, tmp_path: Path) -> None:
    out = ok(cli(server, "verify", "remote-bk1", cwd=tmp_path))  # nothing of that name exists locally
    assert out.startswith("OK") and "41 records" in out
    report = json.loads(ok(cli(server, "verify", "remote-bk1", "--json")))
    assert report["ok"] and report["recordsChecked"] == 41
    manifest = json.loads(ok(cli(server, "inspect", "remote-bk1", "--json")))
    assert manifest["export_id"] == exported and manifest["totals"]["records"] == 41
    assert "films" in ok(cli(server, "inspect", "remote-bk1"))


def test_a_missing_path_is_not_found_never_a_crash(server: RunningServer, exported: str) -> None:
    p = cli(server, "verify", "no-such-archive")
    assert p.returncode == 1 and "not found" in p.stderr and "crash" not in p.stderr and "never committed" \
        not in p.stderr, p.stderr
    p = cli(server, "inspect", "/etc")
    assert p.returncode == 1 and "storage roots" in p.stderr


def test_download_follows_the_exports_links(server: RunningServer, exported: str, tmp_path: Path) -> None:
    for i, src in enumerate(("remote-bk1", exported)):
        dest = tmp_path / f"copy{i}"
        out = ok(cli(server, "download", src, str(dest)))
        assert "verified" in out and (dest / "manifest.json").is_file()
        assert spruce.Client(data_dir=str(tmp_path / f"d{i}")).verify_archive(str(dest))["ok"]


def test_links_file_from_jobs_show_works(server: RunningServer, exported: str, tmp_path: Path) -> None:
    job = json.loads(ok(cli(server, "jobs", "show", exported, "--json")))
    assert job["downloadUrls"] and all(u.startswith("http") for u in job["downloadUrls"].values())
    links = tmp_path / "links.json"
    links.write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPRUCE_")}
    p = subprocess.run([*CLI, "download", job["downloadUrl"], str(tmp_path / "viajob"), "--links", str(links)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "viajob" / "manifest.json").is_file()


def test_the_servers_own_job_file_works_as_a_links_file(server: RunningServer, exported: str,
                                                        tmp_path: Path) -> None:
    ok(cli(server, "jobs", "show", exported))  # the server hands out links, and keeps them in the job file
    assert server.engine is not None
    job_file = Path(server.engine.data_dir) / "jobs" / f"{exported}.json"
    doc = json.loads(job_file.read_text())
    assert doc["download_urls"] and all(u.startswith("http") for u in doc["download_urls"].values())
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPRUCE_")}
    manifest = doc["download_urls"]["manifest.json"]
    p = subprocess.run([*CLI, "download", manifest, str(tmp_path / "viafile"), "--links", str(job_file)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "viafile" / "manifest.json").is_file()
