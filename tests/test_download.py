"""``spruce download``: an archive into a local folder, by storage URI or by signed links, verified.

The S3 side is a real, auth-enforcing SeaweedFS (``s3_server``); the CLI runs in a subprocess,
for the signed-link cases with no AWS variable in its environment at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

import spruce
from spruce.archive import verify_archive
from spruce.archive.download import download_archive, is_link, load_links, safe_url
from spruce.errors import AlreadyExists, ChecksumMismatch, InvalidArgument, MissingFile, StorageError
from spruce.storage import LocalStore, open_store
from test_s3_jobs import assert_same_index, fill

BUCKET = "spruce-download"
CLI = [sys.executable, "-c", "from spruce.cli import main; main()"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The CLI with no AWS_* or SPRUCE_* variable but those given."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SPRUCE_"))}
    base.update({"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"})
    base.update(env or {})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=base, timeout=120)


def failed_line(p: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 1 with exactly one line on stderr, 'error: ...', holding every word."""
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr + p.stdout
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert "X-Amz-Signature" not in lines[0] and "X-Amz-Credential" not in lines[0]
    return lines[0]


class Exported:
    def __init__(self, client: spruce.Client, uri: str, export_id: str) -> None:
        self.client = client
        self.uri = uri
        self.d = client.describe_export(export_id)
        self.job_file = client.engine.data_dir / "jobs" / f"{export_id}.json"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    c = spruce.Client(data_dir=tmp_path_factory.mktemp("download") / "data")
    fill(c, "src", n=700)
    yield c
    c.jobs.shutdown(timeout=30)
    c.engine.close()


def export(c: spruce.Client, s3_server, *, fmt: str = "jsonl.gz", **kw) -> Exported:
    s3_server.create_bucket(BUCKET)
    uri = f"s3://{BUCKET}/{uuid.uuid4().hex[:10]}/archive"
    r = c.Index("src").export_index(uri, format=fmt, part_max_records=300, sync=True,
                                    storage_options=s3_server.options(), **kw)
    ex = Exported(c, uri, r.export_id)
    assert ex.d.status == "Completed" and ex.d.download_urls
    return ex


@pytest.fixture(scope="module")
def exported(client, s3_server) -> Exported:
    return export(client, s3_server)


def write_links(path: Path, links: dict[str, str]) -> Path:
    path.write_text(json.dumps(links))
    return path


# -- through the CLI, against S3 ----------------------------------------------------------------


def test_download_by_storage_uri(exported, s3_server, tmp_path) -> None:
    dest = tmp_path / "by-uri"
    p = cli("download", exported.uri, str(dest), env=s3_server.env())
    assert p.returncode == 0, p.stdout + p.stderr
    assert "OK" in p.stdout and "verified" in p.stdout and "2,100 records" in p.stdout
    report = verify_archive(LocalStore(dest))
    assert report.ok and report.records_checked == 2100 and not report.orphans
    bucket = open_store(exported.uri, **s3_server.options())
    for f in [*report.manifest.files]:
        assert (dest / f.path).read_bytes() == bucket.get_bytes(f.path)
    assert (dest / "manifest.json").read_bytes() == bucket.get_bytes("manifest.json")
    assert not [p for p in dest.rglob("*") if p.name.startswith(".spruce-tmp-")]


def test_download_by_signed_links_needs_no_credentials(exported, client, tmp_path) -> None:
    links = write_links(tmp_path / "links.json", exported.d.download_urls)
    dest = tmp_path / "by-links"
    p = cli("download", exported.d.download_url, str(dest), "--links", str(links))  # no AWS_* at all
    assert p.returncode == 0, p.stdout + p.stderr
    assert "X-Amz-Signature" not in p.stdout + p.stderr
    report = verify_archive(LocalStore(dest))
    assert report.ok and report.records_checked == 2100

    client.Index("from-links").upsert_from_file(str(dest))
    assert_same_index(client, "src", client, "from-links")

    # --link PATH=URL, one per file, does the same; the job's own state file works as --links
    args = [f"--link={path}={url}" for path, url in exported.d.download_urls.items()]
    p = cli("download", exported.d.download_url, str(tmp_path / "by-link-args"), *args)
    assert p.returncode == 0, p.stdout + p.stderr
    assert verify_archive(LocalStore(tmp_path / "by-link-args")).ok
    p = cli("download", exported.d.download_url, str(tmp_path / "by-job-file"), "--links", str(exported.job_file))
    assert p.returncode == 0, p.stdout + p.stderr


def test_tampered_link_fails_naming_the_file(exported, tmp_path) -> None:
    links = dict(exported.d.download_urls)
    victim = "alpha/part-00001.jsonl.gz"
    url = links[victim]
    at = url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
    links[victim] = url[:at] + ("a" if url[at] != "a" else "b") + url[at + 1:]
    dest = tmp_path / "tampered"
    p = cli("download", exported.d.download_url, str(dest), "--links", str(write_links(tmp_path / "l.json", links)))
    failed_line(p, victim, "403", "signature does not match")
    assert not (dest / "manifest.json").exists()  # never looks like a whole archive
    assert not (dest / victim).exists()


def test_expired_links_fail_naming_the_file(client, s3_server, tmp_path) -> None:
    ex = export(client, s3_server, link_expiry_seconds=1)
    time.sleep(2.1)
    links = write_links(tmp_path / "links.json", ex.d.download_urls)
    p = cli("download", ex.d.download_url, str(tmp_path / "expired"), "--links", str(links))
    failed_line(p, "manifest.json", "403", "expired")
    assert not (tmp_path / "expired" / "manifest.json").exists()


def test_corrupted_object_in_bucket_fails_naming_the_file(client, s3_server, tmp_path) -> None:
    ex = export(client, s3_server, fmt="parquet")
    bucket = open_store(ex.uri, **s3_server.options())
    victim = "__default__/part-00001.parquet"
    good = bucket.get_bytes(victim)
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    bucket.put_bytes(victim, bytes(bad))  # same size, one byte different

    p = cli("download", ex.uri, str(tmp_path / "by-uri"), env=s3_server.env())
    failed_line(p, victim, "does not match the manifest", "sha256")
    assert not (tmp_path / "by-uri" / "manifest.json").exists() and not (tmp_path / "by-uri" / victim).exists()

    links = write_links(tmp_path / "links.json", ex.d.download_urls)  # still validly signed
    p = cli("download", ex.d.download_url, str(tmp_path / "by-links"), "--links", str(links))
    failed_line(p, victim, "does not match the manifest")
    assert not (tmp_path / "by-links" / "manifest.json").exists()

    bucket.put_bytes(victim, good[:-10])  # shorter
    p = cli("download", ex.uri, str(tmp_path / "short"), env=s3_server.env())
    failed_line(p, victim, f"the manifest says {len(good)} bytes")
    bucket.delete(victim)
    p = cli("download", ex.uri, str(tmp_path / "missing"), env=s3_server.env())
    failed_line(p, victim, "absent")


def test_download_usage_errors(exported, tmp_path) -> None:
    p = cli("download", exported.d.download_url, str(tmp_path / "x"))  # signed manifest link, no --links
    failed_line(p, "no link for this file", "--links")
    p = cli("download", exported.uri, str(tmp_path / "x"), "--link", "a=https://h/x")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    p = cli("download", str(tmp_path / "nothing-here"), str(tmp_path / "y"))
    failed_line(p, "no manifest")


# -- the library, without S3 ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_archive(client, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("local-archive") / "a"
    client.Index("src").export_index(str(root), format="parquet", part_max_records=500, sync=True)
    return root


class _Body(httpx.SyncByteStream):
    """A streamed body, as a real transport gives (httpx pre-reads plain ``content=`` bodies)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self):
        for i in range(0, len(self.data), 65536):
            yield self.data[i:i + 65536]


def serving(root: Path, *, fail_first: dict[str, int] | None = None, override: dict[str, bytes] | None = None,
            status: dict[str, int] | None = None) -> tuple[httpx.Client, list[str]]:
    """An httpx client whose transport serves ``root`` at http://archive.test/a/ (no network)."""
    seen: list[str] = []
    failures = dict(fail_first or {})

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/a/")
        seen.append(path)
        if failures.get(path):
            failures[path] -= 1
            return httpx.Response(503, text="<Error><Code>SlowDown</Code><Message>busy</Message></Error>")
        if status and path in status:
            return httpx.Response(status[path], text="<Error><Code>NoSuchKey</Code></Error>")
        if override and path in override:
            return httpx.Response(200, stream=_Body(override[path]))
        f = root / path
        return httpx.Response(200, stream=_Body(f.read_bytes())) if f.is_file() else httpx.Response(404)

    return httpx.Client(transport=httpx.MockTransport(handler)), seen


def test_folder_source_resume_and_overwrite_rules(local_archive, client, tmp_path) -> None:
    dest = tmp_path / "copy"
    first = download_archive(str(local_archive), dest)
    assert first.files_fetched == first.files == 6 and first.verify is not None and first.verify.ok
    again = download_archive(str(local_archive), dest)  # resumes: nothing fetched twice
    assert again.files_reused == 6 and again.files_fetched == 0

    (dest / "__default__" / "part-00000.parquet").write_bytes(b"junk")  # a damaged local copy is re-fetched
    (dest / "__default__" / "part-00099.parquet").write_bytes(b"stale")  # and stale parts are removed
    fixed = download_archive(str(local_archive), dest)
    assert fixed.files_fetched == 1 and fixed.removed == ["__default__/part-00099.parquet"]
    assert verify_archive(LocalStore(dest)).ok

    other = tmp_path / "other"
    client.Index("src").export_index(str(other), sync=True)
    with pytest.raises(AlreadyExists, match="already holds archive"):
        download_archive(str(other), dest)
    assert (dest / "manifest.json").exists()  # refused before touching anything
    download_archive(str(other), dest, overwrite=True)
    assert verify_archive(LocalStore(dest)).manifest.file_format == "jsonl.gz"
    with pytest.raises(InvalidArgument, match="source archive itself"):
        download_archive(str(other), other)


def test_http_retries_transient_errors(local_archive, tmp_path) -> None:
    http, seen = serving(local_archive, fail_first={"__default__/part-00000.parquet": 2, "manifest.json": 1})
    report = download_archive("http://archive.test/a/manifest.json", tmp_path / "d", client=http)
    assert report.verify.ok and report.files_fetched == 6  # unsigned links derive from the manifest's
    assert seen.count("__default__/part-00000.parquet") == 3 and seen.count("manifest.json") == 2

    http, _ = serving(local_archive, fail_first={"alpha/part-00000.parquet": 99})
    with pytest.raises(StorageError, match=r"alpha/part-00000.parquet: download failed: HTTP 503.*after 1 retries"):
        download_archive("http://archive.test/a/", tmp_path / "e", client=http, retries=1)


def test_http_bad_bytes_and_missing_files(local_archive, tmp_path) -> None:
    victim = "alpha/part-00001.parquet"
    http, _ = serving(local_archive, override={victim: b"PAR1 not the right bytes"})
    with pytest.raises(ChecksumMismatch, match=f"^{victim}: the downloaded file does not match"):
        download_archive("http://archive.test/a/manifest.json", tmp_path / "d", client=http)
    assert not (tmp_path / "d" / victim).exists() and not (tmp_path / "d" / "manifest.json").exists()

    http, _ = serving(local_archive, status={victim: 404})
    with pytest.raises(MissingFile, match=f"^{victim}: download failed: HTTP 404"):
        download_archive("http://archive.test/a/manifest.json", tmp_path / "e", client=http)


def test_links_helpers(tmp_path) -> None:
    signed = "https://b.s3.amazonaws.com/p/manifest.json?X-Amz-Signature=abc&X-Amz-Credential=AKIA"
    assert is_link(signed) and is_link("http://127.0.0.1:9000/b/manifest.json")
    assert is_link("https://acct.blob.core.windows.net/c/p/manifest.json?sv=1&sig=abc")
    assert not is_link("https://acct.blob.core.windows.net/c/p") and not is_link("s3://b/p")
    assert not is_link("/some/folder")
    assert safe_url(signed) == "https://b.s3.amazonaws.com/p/manifest.json"

    status = {"id": "exp-1", "download_url": signed, "download_urls": {"manifest.json": signed}}
    assert load_links(write_links(tmp_path / "job.json", status)) == {"manifest.json": signed}
    assert load_links(write_links(tmp_path / "pub.json", {"downloadUrls": {"a": signed}})) == {"a": signed}
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(InvalidArgument, match="must be a JSON object"):
        load_links(tmp_path / "bad.json")
    with pytest.raises(InvalidArgument, match="not an http"):
        load_links(write_links(tmp_path / "ftp.json", {"a": "ftp://x/y"}))
