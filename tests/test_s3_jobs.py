"""Export and restore jobs against a real, auth-enforcing S3 server (SeaweedFS), and Azurite.

Everything goes through the public job layer (``Index.export_index`` / ``upsert_from_file``)
or the CLI: round trips are bit-exact, large parts go multipart, the links a Completed export
publishes work with no credentials and only as signed, failures are one clear line that never
holds a secret, and a failed export leaves no manifest and can simply be run again.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import obstore
import pytest

import spruce
from spruce.archive import verify_archive
from spruce.errors import InvalidArgument, StorageError
from spruce.records import RecordBatch
from spruce.storage import open_store

BUCKET = "spruce-jobs"
NAMESPACES = ("", "alpha", "name with spaces/and é")
CLI = [sys.executable, "-c", "from spruce.cli import main; main()"]


@pytest.fixture(scope="module")
def bucket(s3_server) -> str:
    s3_server.create_bucket(BUCKET)
    return BUCKET


@pytest.fixture
def client(tmp_path: Path):
    c = spruce.Client(data_dir=tmp_path / "data")
    yield c
    c.jobs.shutdown(timeout=30)
    c.engine.close()


def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def fill(c: spruce.Client, name: str, *, n: int = 1500, dim: int = 24, seed: int = 0,
         namespaces: tuple[str, ...] = NAMESPACES) -> None:
    """An index with several namespaces, awkward floats and varied metadata (some records without)."""
    c.create_index(name, dimension=dim, metric="cosine")
    idx = c.engine.index(name)
    rng = np.random.default_rng(seed)
    for k, ns in enumerate(namespaces):
        x = rng.standard_normal((n, dim), dtype=np.float32)
        x[0, :3] = [np.float32(1e-45), np.float32(-0.0), np.float32(3.4028235e38)]  # subnormal, -0, max
        md = [None if i % 7 == 0 else {"i": i, "genre": ["news", "blog"][i % 2], "score": i / 3,
                                       "ok": bool(i % 3), "tags": ["a", "é"] if i % 2 else []}
              for i in range(n)]
        ids = [f"{k}-doc-{i:06d}" for i in range(n)]
        for a in range(0, n, 5000):
            idx.upsert_batch(ns, RecordBatch(ids=ids[a:a + 5000], values=x[a:a + 5000], metadata=md[a:a + 5000]))


def dump(c: spruce.Client, name: str) -> dict[str, tuple[list[str], np.ndarray, list[Any]]]:
    """Every record of an index: ids, the float32 values as raw bits, metadata; per namespace."""
    out = {}
    with c.engine.index(name).snapshot() as snap:
        for ns in snap.namespaces():
            ids: list[str] = []
            vals: list[np.ndarray] = []
            mds: list[Any] = []
            for b in snap.iter_batches(ns, batch_size=5000):
                ids += b.ids
                vals.append(np.ascontiguousarray(b.values, dtype=np.float32).view(np.uint32))
                mds += b.metadata
            out[ns] = (ids, np.concatenate(vals), mds)
    return out


def assert_same_index(c: spruce.Client, a: str, c2: spruce.Client, b: str) -> None:
    want, got = dump(c, a), dump(c2, b)
    assert list(got) == list(want)
    for ns in want:
        assert got[ns][0] == want[ns][0], ns
        assert np.array_equal(got[ns][1], want[ns][1]), f"values of namespace {ns!r} differ in some bit"
        assert got[ns][2] == want[ns][2], ns


def one_line(msg: str | None) -> str:
    assert msg, "expected an error message"
    assert "\n" not in msg and "Traceback" not in msg and "Debug source" not in msg and len(msg) < 500, msg
    return msg


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl.gz", "parquet"])
def test_s3_export_restore_round_trip_is_bit_exact(s3_server, bucket, client, fmt) -> None:
    fill(client, "src")
    uri = f"s3://{bucket}/{prefix()}/backup"
    r = client.Index("src").export_index(uri, format=fmt, part_max_records=1000,
                                         storage_options=s3_server.options())
    d = client.wait_export(r.export_id, timeout=60)
    assert d.status == "Completed", d.error
    assert d.uri == uri and d.records_exported == 3 * 1500

    store = open_store(uri, **s3_server.options())
    report = verify_archive(store)
    assert report.ok, report.problems
    assert report.files_checked == 6 and report.records_checked == 4500 and not report.orphans
    assert {p.path for p in store.list()} == {"manifest.json", *(f.path for f in report.manifest.files)}

    imp = client.Index("dst").upsert_from_file(uri, storage_options=s3_server.options())
    assert imp.status == "Completed" and imp.records_imported == 4500 and imp.files_done == 6
    assert_same_index(client, "src", client, "dst")
    assert client.describe_index("dst").metric == "cosine"


def test_s3_part_over_64_mib_goes_multipart_and_round_trips(s3_server, bucket, client) -> None:
    n, dim = 25_000, 768
    client.create_index("big", dimension=dim, metric="dotproduct")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    client.engine.index("big").upsert_batch("", RecordBatch(ids=[f"v{i:06d}" for i in range(n)], values=x,
                                                            metadata=[{"i": i} for i in range(n)]))
    uri = f"s3://{bucket}/{prefix()}/big"
    client.Index("big").export_index(uri, format="parquet", sync=True, part_max_bytes=1 << 30,
                                     part_max_records=10**6, storage_options=s3_server.options())
    store = open_store(uri, **s3_server.options())
    manifest = verify_archive(store).manifest
    assert manifest is not None
    (part,) = manifest.files
    assert part.bytes > 64 * 1024 * 1024 and part.records == n
    # an S3 multipart object's ETag is "<md5 of the part md5s>-<number of parts>"
    etag = obstore.head(store._inner, part.path)["e_tag"].strip('"')
    assert etag.rsplit("-", 1)[-1].isdigit() and "-" in etag, etag
    assert int(etag.rsplit("-", 1)[1]) >= 8
    key_prefix = uri.split("/", 3)[3]
    assert not [k for k in s3_server.pending_uploads(bucket) if key_prefix in k]  # completed, none left open

    client.Index("big-copy").upsert_from_file(uri, storage_options=s3_server.options())
    got = dump(client, "big-copy")[""]
    assert got[0] == [f"v{i:06d}" for i in range(n)]
    assert np.array_equal(got[1], x.view(np.uint32))


# -- download links ----------------------------------------------------------------------------


def test_download_links_work_without_credentials_and_only_as_signed(s3_server, bucket, client) -> None:
    fill(client, "src", n=600)
    uri = f"s3://{bucket}/{prefix()}/links"
    r = client.Index("src").export_index(uri, format="parquet", part_max_records=250, sync=True,
                                         storage_options=s3_server.options())
    d = client.describe_export(r.export_id)
    assert d.status == "Completed" and d.download_url and d.download_urls and d.download_expires_at
    store = open_store(uri, **s3_server.options())
    manifest = verify_archive(store).manifest
    assert manifest is not None
    assert set(d.download_urls) == {"manifest.json", *(f.path for f in manifest.files)}
    assert len(d.download_urls) == 1 + 3 * 3

    with httpx.Client() as http:  # no credentials of any kind: the signature is the authorisation
        r0 = http.get(d.download_url)
        assert r0.status_code == 200 and r0.content == store.get_bytes("manifest.json")
        for path, url in d.download_urls.items():
            assert "X-Amz-Signature=" in url and s3_server.secret_key not in url
            got = http.get(url)
            assert got.status_code == 200, (path, got.status_code)
            assert got.content == store.get_bytes(path), path

        url = d.download_urls["__default__/part-00001.parquet"]
        at = url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
        tampered = url[:at] + ("0" if url[at] != "0" else "1") + url[at + 1:]
        assert http.get(tampered).status_code == 403
        other_path = url.replace("part-00001.parquet", "part-00000.parquet")
        assert http.get(other_path).status_code == 403
        assert http.get(d.download_url.replace("manifest.json", "manifest.jsonx")).status_code == 403
        unsigned = url.split("?", 1)[0]
        assert http.get(unsigned).status_code == 403


def test_expired_download_links_are_refused(s3_server, bucket, client) -> None:
    fill(client, "src", n=50, namespaces=("",))
    r = client.Index("src").export_index(f"s3://{bucket}/{prefix()}/short", sync=True, link_expiry_seconds=1,
                                         storage_options=s3_server.options())
    d = client.describe_export(r.export_id)
    assert "X-Amz-Expires=1&" in d.download_url
    time.sleep(2.1)
    for url in [d.download_url, *d.download_urls.values()]:
        assert httpx.get(url).status_code == 403


def test_link_expiry_the_store_refuses_fails_before_writing(s3_server, bucket, client) -> None:
    fill(client, "src", n=50, namespaces=("",))
    uri = f"s3://{bucket}/{prefix()}/toolong"
    with pytest.raises(InvalidArgument, match="7 days"):  # refused up front, before any job exists
        client.Index("src").export_index(uri, link_expiry_seconds=8 * 24 * 3600,
                                         storage_options=s3_server.options())
    assert list(open_store(uri, **s3_server.options()).list()) == []


# -- failures: one clear line, never a secret ----------------------------------------------------


def test_wrong_secret_fails_clearly(s3_server, bucket, client, tmp_path) -> None:
    fill(client, "src", n=50, namespaces=("",))
    bad = "WRONG-secret-5f1c9a7e-do-not-print"
    opts = s3_server.options(secret_access_key=bad, max_retries=1, retry_timeout=3.0)
    uri = f"s3://{bucket}/{prefix()}/denied"
    r = client.Index("src").export_index(uri, storage_options=opts)
    d = client.wait_export(r.export_id, timeout=30)
    assert d.status == "Failed"
    msg = one_line(d.error)
    assert msg.startswith(uri) and "authentication failed" in msg and "secret key is wrong" in msg
    assert bad not in msg and s3_server.secret_key not in msg

    with pytest.raises(StorageError) as info:  # sync: the same error, raised
        client.Index("src").export_index(uri, sync=True, storage_options=opts)
    assert "authentication failed" in one_line(str(info.value)) and bad not in str(info.value)
    with pytest.raises(StorageError) as info:
        client.Index("dst").upsert_from_file(uri, storage_options=opts)
    assert "authentication failed" in one_line(str(info.value)) and bad not in str(info.value)
    assert not client.has_index("dst")
    for f in (tmp_path / "data" / "jobs").iterdir():
        assert bad not in f.read_text(errors="replace"), f


def test_missing_bucket_is_named(s3_server, client) -> None:
    fill(client, "src", n=50, namespaces=("",))
    r = client.Index("src").export_index("s3://no-such-bucket-7c3/p", storage_options=s3_server.options())
    d = client.wait_export(r.export_id, timeout=30)
    assert d.status == "Failed"
    msg = one_line(d.error)
    assert "no-such-bucket-7c3" in msg and "does not exist" in msg
    with pytest.raises(StorageError, match=r"no-such-bucket-7c3.*does not exist"):
        client.Index("dst").upsert_from_file("s3://no-such-bucket-7c3/p", storage_options=s3_server.options())


def test_server_stopped_mid_export_then_rerun_completes(s3_server, bucket, client) -> None:
    fill(client, "src", n=12_000, dim=64, namespaces=("",))
    uri = f"s3://{bucket}/{prefix()}/interrupted"
    opts = s3_server.options(max_retries=2, retry_timeout=3.0, timeout=3.0, connect_timeout=1.0)
    store = open_store(uri, **s3_server.options())
    r = client.Index("src").export_index(uri, part_max_records=200, storage_options=opts)
    deadline = time.monotonic() + 30
    while client.describe_export(r.export_id).records_exported < 1000:
        assert time.monotonic() < deadline, "the export made no progress"
        time.sleep(0.005)
    s3_server.stop()
    try:
        started = time.monotonic()
        d = client.wait_export(r.export_id, timeout=60)
        assert d.status == "Failed", (d.status, d.records_exported)
        assert time.monotonic() - started < 30  # retried, then gave up: it did not hang
        msg = one_line(d.error)
        assert "cannot reach the storage endpoint" in msg and "retries" in msg and "part-" in msg
        assert s3_server.secret_key not in msg
    finally:
        s3_server.start()

    paths = {p.path for p in store.list()}
    assert "manifest.json" not in paths and paths, paths  # parts, but never a manifest
    assert not verify_archive(store).ok

    again = client.Index("src").export_index(uri, part_max_records=5000, sync=True,
                                             storage_options=s3_server.options())
    assert client.describe_export(again.export_id).status == "Completed"
    report = verify_archive(store)
    assert report.ok and report.records_checked == 12_000
    assert not report.orphans  # the first run's leftover parts were removed
    assert {p.path for p in store.list()} == {"manifest.json", *(f.path for f in report.manifest.files)}
    client.Index("dst").upsert_from_file(uri, storage_options=s3_server.options())
    assert_same_index(client, "src", client, "dst")


def test_no_secret_reaches_manifest_job_files_status_or_logs(s3_server, bucket, client, tmp_path, caplog,
                                                            capfd) -> None:
    secret = s3_server.secret_key
    assert secret.startswith("sk-") and len(secret) > 20  # distinctive: random, never a common string
    wrong = "LEAKCHECK-9d8e7f6a5b4c3d2e1f"
    caplog.set_level(logging.DEBUG)
    fill(client, "src", n=300)
    uri = f"s3://{bucket}/{prefix()}/leak"
    ok = client.Index("src").export_index(uri, format="parquet", part_max_records=100, sync=True,
                                          storage_options=s3_server.options())
    bad = client.Index("src").export_index(f"s3://{bucket}/{prefix()}/leak2",
                                           storage_options=s3_server.options(secret_access_key=wrong))
    client.wait_export(bad.export_id, timeout=30)
    imp = client.Index("dst").upsert_from_file(uri, storage_options=s3_server.options())
    logging.getLogger("spruce.test").debug("sentinel")  # logging really was captured at DEBUG

    texts: dict[str, str] = {}
    texts["manifest"] = open_store(uri, **s3_server.options()).get_bytes("manifest.json").decode()
    for f in sorted((tmp_path / "data" / "jobs").iterdir()):
        texts[f"jobs/{f.name}"] = f.read_text(errors="replace")
    for job_id in (ok.export_id, bad.export_id, imp.import_id):
        texts[f"public {job_id}"] = json.dumps(client.jobs.describe(job_id).public(), default=str)
    texts["export description"] = json.dumps(client.describe_export(ok.export_id).to_dict(), default=str)
    texts["failed export error"] = client.describe_export(bad.export_id).error or ""
    texts["logs"] = caplog.text
    out, err = capfd.readouterr()
    texts["stdout/stderr"] = out + err

    assert "sentinel" in texts["logs"]
    assert "authentication failed" in texts["failed export error"]
    assert any(name.startswith("jobs/exp-") for name in texts) and any(name.startswith("jobs/imp-") for name in texts)
    for name, text in texts.items():
        assert secret not in text, f"the secret key leaked into {name}"
        assert wrong not in text, f"the wrong secret leaked into {name}"
        assert "secret_access_key" not in text, f"a secret option leaked into {name}"


# -- the CLI ---------------------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SPRUCE_"))}
    base.update({"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}, **env)
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=base, timeout=120)


def test_cli_export_and_restore_through_s3(s3_server, bucket, tmp_path) -> None:
    data = str(tmp_path / "data")
    c = spruce.Client(data_dir=data)
    fill(c, "src", n=400)
    c.engine.close()
    uri = f"s3://{bucket}/{prefix()}/cli"
    creds = {k: v for k, v in s3_server.env().items() if k != "AWS_ENDPOINT_URL"}

    p = _cli("--data", data, "export", "src", uri, "--format", "parquet", "--endpoint-url", s3_server.endpoint_url,
             env=creds)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "exported" in p.stdout and "1,200" in p.stdout and s3_server.secret_key not in p.stdout + p.stderr

    p = _cli("--data", data, "verify", uri, env=s3_server.env())  # endpoint from AWS_ENDPOINT_URL
    assert p.returncode == 0 and "OK" in p.stdout, p.stdout + p.stderr
    p = _cli("--data", data, "restore", uri, "dst", env=s3_server.env())
    assert p.returncode == 0, p.stdout + p.stderr

    p = _cli("--data", data, "restore", uri, "dst2", env={**s3_server.env(), "AWS_SECRET_ACCESS_KEY": "nope-1234"})
    assert p.returncode == 1 and "authentication failed" in p.stderr and "nope-1234" not in p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in p.stderr, p.stderr

    c = spruce.Client(data_dir=data)
    try:
        assert_same_index(c, "src", c, "dst")
        assert not c.has_index("dst2")
    finally:
        c.engine.close()


# -- Azure (Azurite) -------------------------------------------------------------------------------


def test_azure_export_restore_round_trip(azurite_server, client) -> None:
    azurite_server.create_container("spruce-jobs")
    fill(client, "src", n=500)
    uri = f"az://spruce-jobs/{prefix()}/backup"
    opts = azurite_server.options()
    client.Index("src").export_index(uri, format="jsonl.gz", part_max_records=200, sync=True,
                                     storage_options=opts)
    store = open_store(uri, **opts)
    report = verify_archive(store)
    assert report.ok and report.records_checked == 1500
    exports = client.list_exports()
    d = exports[-1]
    assert d.status == "Completed" and d.download_urls
    r = httpx.get(d.download_urls["__default__/part-00000.jsonl.gz"])
    assert r.status_code == 200 and r.content == store.get_bytes("__default__/part-00000.jsonl.gz")
    client.Index("dst").upsert_from_file(uri, storage_options=opts)
    assert_same_index(client, "src", client, "dst")
