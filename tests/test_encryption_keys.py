"""Archive keys: ``spruce key generate``, the key file and SPRUCE_ARCHIVE_PASSPHRASE through the CLI
(export, backup, verify, a detached --no-wait worker), and where keys never go: job state,
manifests, error output, reprs, pickles.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import spruce
from encryption_util import DIM, records
from spruce import jobs
from spruce.archive import ArchiveKey, ArchiveReader, generate_key_file, open_source
from spruce.archive.keys import PASSPHRASE_ENV
from spruce.errors import InvalidArgument
from spruce.storage import open_store
from test_cli_archive import failed  # exit 1, one "error:" line naming the words, no traceback


@pytest.fixture
def key(tmp_path: Path) -> ArchiveKey:
    generate_key_file(tmp_path / "archive.key")
    return ArchiveKey.from_file(tmp_path / "archive.key")


@pytest.fixture
def client(tmp_path: Path):
    c = spruce.Client(data_dir=tmp_path / "data")
    c.create_index("src", dimension=DIM, metric="cosine")
    c.engine.index("src").upsert_batch("", records(200, 0))
    yield c
    c.jobs.shutdown(timeout=30)
    c.engine.close()


def run(data: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in ("SPRUCE_DATA", PASSPHRASE_ENV)}
    e.update({"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb", **(env or {})})
    return subprocess.run([sys.executable, "-m", "spruce", "--data", str(data), *args], capture_output=True,
                          text=True, env=e, timeout=120)


def ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return p.stdout


@pytest.fixture
def cli_data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    c = spruce.Client(data)
    c.create_index("docs", dimension=DIM)
    c.engine.index("docs").upsert_batch("", records(300, 5, prefix="cli"))
    c.engine.index("docs").upsert_batch("b", records(40, 6, prefix="cli"))
    c.engine.close()
    return data


def test_key_generate_refuses_to_overwrite_and_is_0600(tmp_path) -> None:
    path = tmp_path / "k.key"
    out = ok(run(tmp_path / "data", "key", "generate", str(path)))
    raw = path.read_bytes()
    assert len(raw) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    fp = ArchiveKey.from_file(path).key_file_fingerprint
    assert fp in out and raw.hex() not in out
    assert ok(run(tmp_path / "data", "key", "fingerprint", str(path))).strip() == fp
    failed(run(tmp_path / "data", "key", "generate", str(path)), "already exists", str(path))
    assert path.read_bytes() == raw  # untouched
    with pytest.raises(FileExistsError):
        generate_key_file(path)


def test_cli_key_file_export_verify_and_failures(cli_data, tmp_path) -> None:
    keyf, arch = tmp_path / "k.key", tmp_path / "arch"
    ok(run(cli_data, "key", "generate", str(keyf)))
    out = ok(run(cli_data, "export", "docs", str(arch), "--encrypt", "--key-file", str(keyf), "-q"))
    assert "encrypted" in out
    raw_key = keyf.read_bytes()
    # verify without the key: checksums of the ciphertext, and it says the records were not decrypted
    out = ok(run(cli_data, "verify", str(arch)))
    assert "OK" in out and "not decrypted" in out
    out = ok(run(cli_data, "verify", str(arch), "--key-file", str(keyf), "--read-data"))
    assert "340 records" in out and "decrypted" in out
    report = json.loads(ok(run(cli_data, "verify", str(arch), "--json")))
    assert report["encrypted"] and not report["recordsRead"] and report["ok"]
    failed(run(cli_data, "verify", str(arch), "--read-data"), "encrypted", "--key-file")
    other = tmp_path / "other.key"
    generate_key_file(other)
    failed(run(cli_data, "verify", str(arch), "--key-file", str(other)), "wrong key")
    assert "encryption" in ok(run(cli_data, "inspect", str(arch)))
    manifest = (arch / "manifest.json").read_text()
    for secret in (raw_key.hex(), raw_key.hex().upper(), str(raw_key)):
        assert secret not in manifest
    assert raw_key not in (arch / "manifest.json").read_bytes()
    # a flipped byte: one line naming the file
    part = arch / "__default__" / "part-00000.jsonl.gz"
    b = bytearray(part.read_bytes())
    b[100] ^= 0xFF
    part.write_bytes(bytes(b))
    p = run(cli_data, "verify", str(arch), "--key-file", str(keyf))
    assert p.returncode == 1 and "__default__/part-00000.jsonl.gz" in p.stderr and "Traceback" not in p.stderr
    # --encrypt without a key, --key-file without --encrypt
    failed(run(cli_data, "export", "docs", str(tmp_path / "x"), "--encrypt"), "--key-file", PASSPHRASE_ENV)
    assert run(cli_data, "export", "docs", str(tmp_path / "y"), "--key-file", str(keyf)).returncode == 2


def test_passphrase_from_the_environment_never_leaks(cli_data, tmp_path) -> None:
    secret = "pass-Wörd with spaces & symbols #" + uuid.uuid4().hex[:8]
    env = {PASSPHRASE_ENV: secret}
    arch, repo = tmp_path / "arch", tmp_path / "repo"
    ok(run(cli_data, "export", "docs", str(arch), "--encrypt", "-q", env=env))
    ok(run(cli_data, "backup", "docs", str(repo), "--encrypt", "-q", env=env))
    m = json.loads((arch / "manifest.json").read_text())
    assert m["encryption"]["key"]["kind"] == "passphrase" and m["encryption"]["key"]["kdf"]["n"] == 1 << 17
    source = open_source(open_store(str(arch)), key=ArchiveKey.from_passphrase(secret))
    assert sum(len(b) for f in source.files for b in source.read(f)) == 340
    out = ok(run(cli_data, "verify", str(arch), "--read-data", env=env))
    assert "340 records" in out
    # failures: a wrong passphrase, and a job that fails with the passphrase in its environment
    p = run(cli_data, "verify", str(arch), "--read-data", env={PASSPHRASE_ENV: secret + "x"})
    failed(p, "wrong key")
    assert secret not in p.stderr + p.stdout
    (tmp_path / "file").write_text("not a folder")
    p = run(cli_data, "export", "docs", str(tmp_path / "file"), "--encrypt", env=env)
    assert p.returncode == 1 and secret not in p.stderr + p.stdout
    # detached worker (--no-wait): the passphrase travels in the environment only
    job_id = ok(run(cli_data, "export", "docs", str(tmp_path / "bg"), "--encrypt", "--no-wait", env=env)).strip()
    deadline = time.monotonic() + 60
    status = ""
    while time.monotonic() < deadline and status not in ("Completed", "Failed", "Cancelled"):
        out = run(cli_data, "jobs", "show", job_id, "--json").stdout
        status = json.loads(out)["status"] if out.strip() else ""
        time.sleep(0.2)
    assert status == "Completed", out
    assert ArchiveReader(open_store(str(tmp_path / "bg"))).manifest.encryption["key"]["kind"] == "passphrase"
    # nothing of the secret in any job file, manifest or log
    for path in list((cli_data / "jobs").rglob("*")) + list(arch.rglob("manifest.json")) + list(
            repo.rglob("manifest.json")) + list((tmp_path / "bg").rglob("manifest.json")):
        if path.is_file():
            text = path.read_bytes()
            assert secret.encode() not in text and secret.encode("utf-8").hex().encode() not in text, path
    states = [json.loads(p.read_text()) for p in (cli_data / "jobs").glob("*.json")]
    enc = [s["options"]["encryption"] for s in states if s.get("options", {}).get("encryption")]
    assert enc and all(e == {"passphrase": True} for e in enc), enc


def test_key_file_job_state_holds_the_path_not_the_key(client, tmp_path, key) -> None:
    job = jobs.start_export(client.engine, "src", str(tmp_path / "a"), sync=True, manager=client.jobs,
                            encryption_key=key)
    text = (tmp_path / "data" / "jobs" / f"{job.id}.json").read_bytes()
    raw = Path(key.key_file).read_bytes()
    assert key.key_file.encode() in text
    assert raw not in text and raw.hex().encode() not in text
    assert "ArchiveKey(key file" in repr(key) and raw.hex() not in repr(key)
    with pytest.raises(TypeError):
        import pickle
        pickle.dumps(key)
    # a resumed job in a process that was not given the key finds it again from the path
    client.jobs.keys.clear()
    from spruce.jobs.encryption import job_key

    class Ctx:
        state, manager = job, client.jobs
    assert job_key(Ctx).key_file_fingerprint == key.key_file_fingerprint
    # a writer takes one key: a key file and a passphrase at once are refused
    both = ArchiveKey.from_env(key.key_file, environ={PASSPHRASE_ENV: "pw"})
    with pytest.raises(InvalidArgument):
        jobs.start_export(client.engine, "src", str(tmp_path / "b"), manager=client.jobs, encryption_key=both)
    assert re.search(r"key file .* and passphrase", repr(both))


