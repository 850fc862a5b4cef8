"""Encrypted archives through the jobs a user runs: restore, dry run, snapshot chains, the CLI.

Without the key, or with another one, a restore stops before its job exists and writes nothing;
a tampered file stops it naming the file, and nothing of the archive is applied.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import spruce
from encryption_util import DIM, index_rows, records
from spruce.archive.keys import ArchiveKey, generate_key_file
from spruce.errors import ArchiveLocked, ChecksumMismatch, WrongKey
from spruce.jobs.backup import start_backup
from spruce.jobs.chain import start_snapshot_restore


@pytest.fixture
def client(tmp_path):
    c = spruce.Client(tmp_path / "data")
    c.create_index("src", dimension=DIM, metric="dotproduct")
    ix = c.engine.index("src")
    ix.upsert_batch("", records(300, 1))
    ix.upsert_batch("films", records(50, 2, prefix="film"))
    yield c
    c.close()


@pytest.fixture
def key(tmp_path) -> ArchiveKey:
    path = tmp_path / "archive.key"
    generate_key_file(path)
    return ArchiveKey.from_file(path)


def other_key(tmp_path) -> ArchiveKey:
    path = tmp_path / "other.key"
    generate_key_file(path)
    return ArchiveKey.from_file(path)


@pytest.mark.parametrize("fmt", ["jsonl.gz", "parquet"])
def test_an_encrypted_export_restores_exactly_with_its_key_and_not_without(client, tmp_path, key, fmt):
    dest = str(tmp_path / "enc")
    client.Index("src").export_index(dest, format=fmt, sync=True, part_max_records=100, encryption_key=key)
    with pytest.raises(ArchiveLocked):
        client.Index("nokey").upsert_from_file(dest)
    with pytest.raises(WrongKey):
        client.Index("wrong").upsert_from_file(dest, encryption_key=other_key(tmp_path))
    assert not client.has_index("nokey") and not client.has_index("wrong")
    assert client.jobs.list(kind="import") == []  # refused before any job existed
    d = client.Index("back").upsert_from_file(dest, encryption_key=key)
    assert d.records_imported == 350
    assert index_rows(client, "back") == index_rows(client, "src")
    # a dry run decrypts and verifies too, and writes nothing
    before = client.engine.index("back").seq
    report = client.Index("back").upsert_from_file(dest, encryption_key=key, dry_run=True).dry_run_report
    assert report["totals"]["conflicts"] == 350 and client.engine.index("back").seq == before


def test_a_tampered_file_stops_the_restore_before_anything_is_written(client, tmp_path, key):
    dest = tmp_path / "enc"
    client.Index("src").export_index(str(dest), sync=True, part_max_records=100, encryption_key=key)
    part = dest / "__default__" / "part-00002.jsonl.gz"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 1
    part.write_bytes(bytes(data))
    client.create_index("target", dimension=DIM, metric="dotproduct")
    before = client.engine.index("target").seq
    with pytest.raises(ChecksumMismatch, match="part-00002"):
        client.Index("target").upsert_from_file(str(dest), encryption_key=key)
    assert client.engine.index("target").seq == before


def test_an_encrypted_snapshot_chain_restores_with_its_key(client, tmp_path, key):
    repo = str(tmp_path / "repo")
    jobs = [start_backup(client.engine, "src", repo, sync=True, manager=client.jobs, encryption_key=key)]
    client.Index("src").delete(ids=["doc-1-00003", "doc-1-00004"])
    client.engine.index("src").upsert_batch("films", records(5, 9, prefix="film"))
    jobs.append(start_backup(client.engine, "src", repo, sync=True, manager=client.jobs, encryption_key=key))
    assert [j.status for j in jobs] == ["Completed", "Completed"]
    tombstones = list(Path(repo).rglob("tombstones.jsonl.gz"))
    assert tombstones and b"doc-1-00003" not in tombstones[0].read_bytes()
    with pytest.raises(ArchiveLocked):
        start_snapshot_restore(client.engine, repo, "nokey", manager=client.jobs)
    with pytest.raises(WrongKey):
        start_snapshot_restore(client.engine, repo, "wrong", manager=client.jobs, encryption_key=other_key(tmp_path))
    assert not client.has_index("nokey") and not client.has_index("wrong")
    job = start_snapshot_restore(client.engine, repo, "back", manager=client.jobs, encryption_key=key)
    assert job.status == "Completed", job.error
    assert index_rows(client, "back") == index_rows(client, "src")


def test_the_cli_with_a_passphrase_never_shows_it(client, tmp_path):
    client.close()
    secret = "correct horse battery staple 42"
    env = {**os.environ, "SPRUCE_DATA": str(tmp_path / "data"), "SPRUCE_ARCHIVE_PASSPHRASE": secret}
    bare = {k: v for k, v in env.items() if k != "SPRUCE_ARCHIVE_PASSPHRASE"}

    def run(*args: str, code: int = 0, environ: dict[str, str] = env) -> subprocess.CompletedProcess:
        out = subprocess.run([sys.executable, "-m", "spruce", *args], capture_output=True, text=True, env=environ)
        assert out.returncode == code, out.stderr
        assert secret not in out.stdout + out.stderr
        return out

    run("export", "src", str(tmp_path / "enc"), "--encrypt")
    refused = run("restore", str(tmp_path / "enc"), "nokey", code=1, environ=bare)
    assert len(refused.stderr.strip().splitlines()) == 1 and "encrypted" in refused.stderr
    run("restore", str(tmp_path / "enc"), "back")
    run("backup", "src", str(tmp_path / "repo"), "--encrypt")
    run("restore", str(tmp_path / "repo"), "back2", "--snapshot", "latest")
    with spruce.Client(tmp_path / "data") as c:
        assert index_rows(c, "back") == index_rows(c, "src") == index_rows(c, "back2")
        assert not c.has_index("nokey")
    for path in [*Path(tmp_path / "data" / "jobs").iterdir(), *Path(tmp_path).rglob("manifest.json")]:
        assert secret.encode() not in path.read_bytes()
