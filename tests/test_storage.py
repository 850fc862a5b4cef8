"""Storage backends: URI parsing, and one contract run against real servers.

LocalStore, ObjectStore over SeaweedFS (real S3 with auth enforced) and, when Azurite is
installed, ObjectStore over Azure Blob Storage all pass the same contract tests.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from obstore.exceptions import GenericError, PermissionDeniedError, UnauthenticatedError

from s3server import closed_port
from spruce.errors import InvalidArgument, StorageError
from spruce.storage import LocalStore, ObjectInfo, Store, open_store
from spruce.storage.object import ObjectStore, describe_storage_error
from spruce.storage.uri import StorageURI, parse_storage_uri, redact_uri

MiB = 1024 * 1024
BUCKET = "spruce-test"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


# -- URI parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("/data/archives", StorageURI("file", prefix="/data/archives")),
        ("relative/dir", StorageURI("file", prefix="relative/dir")),
        ("~/exports", StorageURI("file", prefix="~/exports")),
        ("C:\\exports\\x", StorageURI("file", prefix="C:\\exports\\x")),
        ("file:///tmp/a%20b", StorageURI("file", prefix="/tmp/a b")),
        ("file://localhost/tmp/x", StorageURI("file", prefix="/tmp/x")),
        ("s3://bucket", StorageURI("s3", bucket="bucket")),
        ("s3://bucket/", StorageURI("s3", bucket="bucket")),
        ("s3://my.bucket-1/a/b/", StorageURI("s3", bucket="my.bucket-1", prefix="a/b")),
        ("S3A://bucket//a//b", StorageURI("s3", bucket="bucket", prefix="a/b")),
        ("s3://bucket/user@example.com/x", StorageURI("s3", bucket="bucket", prefix="user@example.com/x")),
        ("gs://gbucket/exports/2024", StorageURI("gs", bucket="gbucket", prefix="exports/2024")),
        ("gcs://gbucket", StorageURI("gs", bucket="gbucket")),
        ("az://container/pre/fix", StorageURI("az", bucket="container", prefix="pre/fix")),
        ("azure://container", StorageURI("az", bucket="container")),
        (
            "https://myaccount.blob.core.windows.net/container/pre/fix",
            StorageURI("az", bucket="container", prefix="pre/fix", account="myaccount"),
        ),
        (
            "https://MyAccount.blob.core.windows.net:443/container",
            StorageURI("az", bucket="container", account="myaccount"),
        ),
    ],
)
def test_parse_storage_uri(uri: str, expected: StorageURI) -> None:
    assert parse_storage_uri(uri) == expected


@pytest.mark.parametrize(
    ("uri", "canonical"),
    [
        ("s3://b/x/y/", "s3://b/x/y"),
        ("gcs://b", "gs://b"),
        ("azure://c/p", "az://c/p"),
        ("https://acct.blob.core.windows.net/c/p", "https://acct.blob.core.windows.net/c/p"),
        ("/tmp/x", "file:///tmp/x"),
    ],
)
def test_canonical_form(uri: str, canonical: str) -> None:
    assert str(parse_storage_uri(uri)) == canonical


def test_child_uri() -> None:
    u = parse_storage_uri("s3://b/root")
    assert str(u.child("a/b")) == "s3://b/root/a/b"
    assert str(parse_storage_uri("s3://b").child("/x/")) == "s3://b/x"
    with pytest.raises(InvalidArgument):
        u.child("../escape")


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "s3://",
        "s3:bucket/x",
        "ftp://host/x",
        "https://example.com/bucket/x",
        "https://acct.blob.core.windows.net/",
        "s3://bucket/../x",
        "s3://bad bucket/x",
        "s3://bucket/x?versionId=1",
        "file://otherhost/x",
    ],
)
def test_bad_uris_are_invalid_argument(uri: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_storage_uri(uri)


@pytest.mark.parametrize(
    "uri",
    [
        f"s3://AKIAEXAMPLE:{SECRET}@bucket/prefix",  # the secret contains '/'
        f"s3://{SECRET.replace('/', '')}@bucket/prefix",  # a bare token as userinfo
        f"gs://oauth2:{SECRET}@bucket/p",
        f"az://account:{SECRET}@container/p",
        f"https://user:{SECRET}@acct.blob.core.windows.net/c/p",
        f"https://acct.blob.core.windows.net/c/p?sv=2022-11-02&sig={SECRET}",
        f"s3://bucket/p?X-Amz-Signature={SECRET}",
        f"file://user:{SECRET}@host/tmp/x",
    ],
)
def test_credentials_in_uris_are_refused_without_echo(uri: str) -> None:
    for call in (lambda: parse_storage_uri(uri), lambda: open_store(uri)):
        with pytest.raises(InvalidArgument) as info:
            call()
        message = str(info.value)
        assert SECRET not in message
        assert "K7MDENG" not in message and "EXAMPLEKEY" not in message  # nor any fragment of it
        assert "\n" not in message


def test_redact_uri() -> None:
    assert SECRET not in redact_uri(f"s3://AKIA:{SECRET}@bucket/prefix")
    assert redact_uri(f"s3://AKIA:{SECRET}@bucket/prefix").endswith("@bucket/prefix")
    assert redact_uri("s3://bucket/p/") == "s3://bucket/p"
    assert SECRET not in redact_uri(f"https://a.blob.core.windows.net/c?sig={SECRET}")


# -- open_store dispatch and configuration (no server needed) -----------------------------


def test_open_store_local(tmp_path: Path) -> None:
    for uri in (str(tmp_path), tmp_path.as_uri()):
        store = open_store(uri)
        assert isinstance(store, LocalStore)
        assert store.uri == tmp_path.as_uri()
        assert open_store(store.uri).uri == store.uri
    assert isinstance(open_store(str(tmp_path), endpoint_url="ignored"), LocalStore)


@pytest.mark.parametrize(
    ("uri", "options"),
    [
        ("s3://bucket/p", {}),
        ("gs://bucket/p", {}),
        ("az://container/p", {"account_name": "acct"}),
        ("https://acct.blob.core.windows.net/container/p", {}),
    ],
)
def test_open_store_object_backends(uri: str, options: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_NAME", raising=False)
    store = open_store(uri, **options)
    assert isinstance(store, ObjectStore)
    assert store.uri == str(parse_storage_uri(uri))
    assert open_store(store.uri, **options).uri == store.uri  # jobs re-open stores by their uri
    assert store.local_path("x") is None
    child = store.child("sub/dir")
    assert child.uri == store.uri + "/sub/dir"


def test_open_store_rejects_bad_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_NAME", raising=False)
    with pytest.raises(InvalidArgument, match="unknown storage option"):
        open_store("s3://bucket", endpiont_url="http://x")
    with pytest.raises(InvalidArgument, match="sse"):
        open_store("s3://bucket", sse="rot13")
    with pytest.raises(InvalidArgument, match="part_size"):
        open_store("s3://bucket", part_size=1024)
    with pytest.raises(InvalidArgument, match="account"):
        open_store("az://container/p")


def test_s3_configuration_from_env_and_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT",
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "missing-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "missing-config"))

    store = open_store("s3://bucket/p")
    assert store._inner.config["region"] == "us-east-1"
    assert store._inner.client_options["allow_http"] in (False, "false")

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    assert open_store("s3://bucket")._inner.config["region"] == "eu-west-3"
    monkeypatch.setenv("AWS_REGION", "eu-north-1")
    assert open_store("s3://bucket")._inner.config["region"] == "eu-north-1"
    assert open_store("s3://bucket", region="ap-south-1")._inner.config["region"] == "ap-south-1"

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    s = open_store("s3://bucket")
    assert s._inner.config["endpoint"] == "http://127.0.0.1:9000"
    assert s._inner.client_options["allow_http"] in (True, "true")

    s = open_store("s3://bucket", sse="AES256")
    assert s._inner.config["server_side_encryption"] == "AES256"
    s = open_store("s3://bucket", sse_kms_key_id="arn:aws:kms:eu-north-1:1:key/abc")
    assert s._inner.config["server_side_encryption"] == "aws:kms"
    assert s._inner.config["sse_kms_key_id"] == "arn:aws:kms:eu-north-1:1:key/abc"

    s = open_store("s3://bucket", max_retries=2, retry_timeout=3, timeout=4, connect_timeout=1)
    assert s._inner.retry_config["max_retries"] == 2
    assert s._inner.retry_config["retry_timeout"] == timedelta(seconds=3)

    # secrets never reach the public face of a store
    s = open_store("s3://bucket/p", access_key_id="AKIAEXAMPLE", secret_access_key=SECRET)
    assert SECRET not in s.uri and SECRET not in repr(s)


def test_s3_shared_credentials_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION",
                "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    creds = tmp_path / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = {SECRET}\n"
                     f"[work]\naws_access_key_id = AKIAWORK\naws_secret_access_key = {SECRET}x\n")
    config = tmp_path / "config"
    config.write_text("[profile work]\nregion = eu-central-1\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))

    monkeypatch.delenv("AWS_PROFILE", raising=False)
    assert open_store("s3://bucket")._inner.config["access_key_id"] == "AKIADEFAULT"
    monkeypatch.setenv("AWS_PROFILE", "work")
    cfg = open_store("s3://bucket")._inner.config
    assert (cfg["access_key_id"], cfg["region"]) == ("AKIAWORK", "eu-central-1")
    with pytest.raises(StorageError, match="nope"):
        open_store("s3://bucket", profile="nope")
    # environment keys come first in the chain
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
    assert open_store("s3://bucket")._inner.config.get("access_key_id") in (None, "AKIAENV")


def test_gcs_and_azure_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_NAME", raising=False)
    g = open_store("gs://gbucket/p", endpoint_url="http://127.0.0.1:4443", anonymous=True)
    assert g._inner.config["base_url"] == "http://127.0.0.1:4443"
    assert g._inner.prefix == "p"
    assert g.signed_url("x") is None  # anonymous stores have no key to sign with
    a = open_store("https://acct.blob.core.windows.net/cont/p", account_key="a2V5", max_retries=1)
    assert a._inner.config["account_name"] == "acct"
    assert "a2V5" not in a.uri
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "envacct")
    assert open_store("az://cont")._inner.config["account_name"] == "envacct"


def test_describe_storage_error_shapes() -> None:
    uri = "s3://bucket/prefix"
    throttled = GenericError(
        "Generic S3 error: Error performing PUT http://h/bucket/k in 2s, after 10 retries - Server returned "
        "non-2xx status code: 503 Service Unavailable: <Error><Code>SlowDown</Code>"
        "<Message>Please reduce your request rate.</Message></Error>\n\nDebug source:\nGeneric { huge dump }"
    )
    err = describe_storage_error(throttled, uri, path="k")
    assert isinstance(err, StorageError)
    assert str(err).startswith("s3://bucket/prefix/k: ")
    assert "503" in str(err) and "SlowDown" in str(err) and "after 10 retries" in str(err)
    assert "Debug source" not in str(err) and "\n" not in str(err)

    leaky = PermissionDeniedError(f"denied for http://AKIA:{SECRET}@h/b?X-Amz-Signature=abcdef status: 403")
    err = describe_storage_error(leaky, uri, secrets=[SECRET])
    assert SECRET not in str(err) and "abcdef" not in str(err)
    assert "access denied" in str(err)

    err = describe_storage_error(UnauthenticatedError("no auth"), uri)
    assert "authentication failed" in str(err)


# -- backends for the contract tests -------------------------------------------------------


@pytest.fixture(scope="session")
def s3_bucket(s3_server) -> str:
    s3_server.create_bucket(BUCKET)
    return BUCKET


@pytest.fixture(scope="session")
def azure_container(azurite_server) -> str:
    azurite_server.create_container(BUCKET)
    return BUCKET


def _unique() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["local", "s3", "azure"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "root")
    if request.param == "s3":
        server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        return open_store(f"s3://{bucket}/{_unique()}", **server.options(part_size=5 * MiB))
    server = request.getfixturevalue("azurite_server")
    container = request.getfixturevalue("azure_container")
    return open_store(f"az://{container}/{_unique()}", **server.options(part_size=5 * MiB))


def _paths(store: Store, prefix: str = "") -> dict[str, int]:
    return {i.path: i.size for i in store.list(prefix)}


# -- the contract --------------------------------------------------------------------------


def test_write_read_list_exists_delete(store: Store) -> None:
    with store.open_writer("a/one.bin") as w:
        w.write(b"hello ")
        w.write(memoryview(b"world"))
    store.put_bytes("a/b/two.txt", b"2")
    store.put_bytes("c.txt", b"three")

    assert store.get_bytes("a/one.bin") == b"hello world"
    with store.open_reader("a/one.bin") as f:
        assert f.read(5) == b"hello"
        assert f.read(1) == b" "
        assert f.read() == b"world"
        assert f.read(10) == b""
    assert store.exists("a/one.bin") and not store.exists("a/nothing")
    assert _paths(store) == {"a/one.bin": 11, "a/b/two.txt": 1, "c.txt": 5}
    assert _paths(store, "a") == {"a/one.bin": 11, "a/b/two.txt": 1}
    assert _paths(store, "a/b/") == {"a/b/two.txt": 1}
    assert _paths(store, "c.txt") == {"c.txt": 5}
    assert _paths(store, "zzz") == {}
    assert all(isinstance(i, ObjectInfo) for i in store.list())

    with pytest.raises(FileNotFoundError):
        store.open_reader("a/missing")
    with pytest.raises(FileNotFoundError):
        store.get_bytes("a/missing")

    store.delete("c.txt")
    store.delete("c.txt")  # absent is fine
    assert not store.exists("c.txt")
    assert store.delete_prefix("a") == 2
    assert _paths(store) == {}


def test_empty_objects(store: Store) -> None:
    store.put_bytes("empty/a", b"")
    with store.open_writer("empty/b"):
        pass
    assert _paths(store) == {"empty/a": 0, "empty/b": 0}
    for name in ("empty/a", "empty/b"):
        assert store.get_bytes(name) == b""
        with store.open_reader(name) as f:
            assert f.read() == b""
            assert f.read(10) == b""


def test_child_store_is_scoped(store: Store) -> None:
    child = store.child("sub")
    child.put_bytes("x.txt", b"x")
    assert store.get_bytes("sub/x.txt") == b"x"
    assert _paths(child) == {"x.txt": 1}
    assert child.uri.rstrip("/").endswith("/sub")


def test_paths_cannot_escape_root(store: Store) -> None:
    with pytest.raises((ValueError, InvalidArgument)):
        store.put_bytes("../outside.txt", b"x")


def test_overwrite_replaces(store: Store) -> None:
    store.put_bytes("m.json", b"v1")
    with store.open_writer("m.json") as w:
        w.write(b"version-2")
    assert store.get_bytes("m.json") == b"version-2"


@pytest.mark.parametrize("size", [1000, 6 * MiB + 123], ids=["small", "multipart"])
def test_writer_not_visible_before_close(store: Store, size: int) -> None:
    data = os.urandom(size)
    w = store.open_writer("pending/obj.bin")
    w.write(data[: size // 2])
    w.write(data[size // 2 :])
    time.sleep(0.3)  # let any part upload get going
    assert not store.exists("pending/obj.bin")
    assert _paths(store) == {}
    w.close()
    assert store.exists("pending/obj.bin")
    assert store.get_bytes("pending/obj.bin") == data
    w.close()  # idempotent


@pytest.mark.parametrize("size", [1000, 11 * MiB], ids=["small", "multipart"])
def test_abort_leaves_nothing(store: Store, size: int, request: pytest.FixtureRequest) -> None:
    w = store.open_writer("aborted/obj.bin")
    w.write(os.urandom(size))
    time.sleep(0.3)
    w.abort()
    assert not store.exists("aborted/obj.bin")
    assert _paths(store) == {}
    # and on S3 the multipart upload itself was aborted, not left behind
    if isinstance(store, ObjectStore) and store.location.scheme == "s3":
        server = request.getfixturevalue("s3_server")
        key = f"{store.location.prefix}/aborted/obj.bin"
        assert key not in server.pending_uploads(store.location.bucket)
    # a context-managed writer aborts on error
    with pytest.raises(RuntimeError), store.open_writer("aborted/ctx.bin") as w2:
        w2.write(b"partial")
        raise RuntimeError("boom")
    assert not store.exists("aborted/ctx.bin")


def test_put_bytes_is_atomic_under_concurrent_reads(store: Store) -> None:
    versions = [bytes([i]) * (100_000 + i * 50_000) for i in range(1, 5)]
    store.put_bytes("manifest.json", versions[0])
    seen: list[bytes] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(store.get_bytes("manifest.json"))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(3):
            for v in versions:
                store.put_bytes("manifest.json", v)
    finally:
        stop.set()
        t.join()
    assert seen
    assert all(s in versions for s in seen)


def test_signed_url_local_is_none(tmp_path: Path) -> None:
    assert LocalStore(tmp_path).signed_url("x", timedelta(minutes=1)) is None


# -- S3 specifics (SeaweedFS) --------------------------------------------------------------


@pytest.fixture
def s3_store(s3_server, s3_bucket) -> ObjectStore:
    return open_store(f"s3://{s3_bucket}/{_unique()}", **s3_server.options())


def test_s3_large_multipart_upload_streams(s3_server, s3_store: ObjectStore) -> None:
    total = 70 * MiB  # > 64 MiB, in 1 MiB writes, ~9 parts of 8 MiB
    block = os.urandom(MiB)
    want = hashlib.sha256()
    w = s3_store.open_writer("big/data.bin")
    for i in range(total // MiB):
        chunk = block[i:] + block[:i]
        w.write(chunk)
        want.update(chunk)
        # memory stays bounded: never more than one part buffered in the writer itself
        assert len(w._buf) < s3_store.options.part_size
        if i == 40:
            key = f"{s3_store.location.prefix}/big/data.bin"
            assert key in s3_server.pending_uploads(s3_store.location.bucket), "expected a multipart upload"
            assert not s3_store.exists("big/data.bin")
    w.close()

    assert _paths(s3_store) == {"big/data.bin": total}
    got = hashlib.sha256()
    with s3_store.open_reader("big/data.bin") as f:
        while chunk := f.read(3 * MiB + 17):
            got.update(chunk)
    assert got.hexdigest() == want.hexdigest()


def test_s3_signed_url(s3_store: ObjectStore) -> None:
    s3_store.put_bytes("shared/file.bin", b"signed bytes")
    s3_store.put_bytes("shared/other.bin", b"other")
    url = s3_store.signed_url("shared/file.bin")
    assert url is not None and "X-Amz-Expires=3600" in url  # default expiry: one hour
    r = httpx.get(url)
    assert r.status_code == 200 and r.content == b"signed bytes"

    sig_at = url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
    flipped = "0" if url[sig_at] != "0" else "1"
    assert httpx.get(url[:sig_at] + flipped + url[sig_at + 1 :]).status_code == 403
    assert httpx.get(url.replace("shared/file.bin", "shared/other.bin")).status_code == 403

    short = s3_store.signed_url("shared/file.bin", timedelta(seconds=1))
    assert short is not None and httpx.get(short).status_code == 200
    time.sleep(2.1)
    assert httpx.get(short).status_code == 403


def _assert_clean(err: StorageError, *, secret: str | None = None) -> str:
    msg = str(err)
    assert "\n" not in msg and "Traceback" not in msg and "Debug source" not in msg
    assert len(msg) < 500
    if secret:
        assert secret not in msg
    return msg


def test_s3_wrong_secret(s3_server, s3_bucket) -> None:
    bad = "definitely-not-the-secret-123"
    store = open_store(f"s3://{s3_bucket}/x", **s3_server.options(secret_access_key=bad))
    for op in (lambda: store.put_bytes("k", b"1"), lambda: store.get_bytes("k"), lambda: list(store.list())):
        with pytest.raises(StorageError) as info:
            op()
        msg = _assert_clean(info.value, secret=bad)
        assert msg.startswith(f"s3://{s3_bucket}/x")
        assert "authentication failed" in msg
        assert s3_server.secret_key not in msg


def test_s3_anonymous_is_denied(s3_server, s3_bucket) -> None:
    store = open_store(f"s3://{s3_bucket}/x", **s3_server.options(anonymous=True))
    with pytest.raises(StorageError) as info:
        store.put_bytes("k", b"1")
    assert "denied" in _assert_clean(info.value)


def test_s3_missing_bucket(s3_server) -> None:
    store = open_store("s3://no-such-bucket-here/p", **s3_server.options())
    for op in (lambda: store.put_bytes("k", b"1"), lambda: store.get_bytes("k"),
               lambda: store.open_reader("k"), lambda: list(store.list()), lambda: store.exists("k")):
        with pytest.raises(StorageError) as info:
            op()
        msg = _assert_clean(info.value)
        assert "no-such-bucket-here" in msg and "does not exist" in msg


def test_s3_unreachable_endpoint(s3_server) -> None:
    port = closed_port()
    store = open_store(
        "s3://bucket/p",
        **s3_server.options(endpoint_url=f"http://127.0.0.1:{port}", max_retries=2, retry_timeout=3.0,
                            connect_timeout=1.0),
    )
    started = time.monotonic()
    with pytest.raises(StorageError) as info:
        store.put_bytes("k", b"1")
    assert time.monotonic() - started < 10
    msg = _assert_clean(info.value, secret=s3_server.secret_key)
    assert "cannot reach" in msg and f"127.0.0.1:{port}" in msg and "refused" in msg


def test_s3_credentials_from_environment(s3_server, s3_bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    store = open_store(f"s3://{s3_bucket}/{_unique()}")
    store.put_bytes("env.txt", b"from env")
    assert store.get_bytes("env.txt") == b"from env"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-env-secret")
    with pytest.raises(StorageError) as info:
        open_store(f"s3://{s3_bucket}/x").get_bytes("env.txt")
    _assert_clean(info.value, secret="wrong-env-secret")


def test_s3_server_side_encryption_header_accepted(s3_server, s3_bucket) -> None:
    store = open_store(f"s3://{s3_bucket}/{_unique()}", **s3_server.options(sse="AES256"))
    store.put_bytes("enc.bin", b"encrypted at rest")
    assert store.get_bytes("enc.bin") == b"encrypted at rest"


def test_s3_server_stopped_mid_write_then_restarted(s3_server, s3_bucket) -> None:
    opts = s3_server.options(part_size=5 * MiB, max_retries=2, retry_timeout=4.0, connect_timeout=1.0,
                             timeout=5.0)
    store = open_store(f"s3://{s3_bucket}/{_unique()}", **opts)
    store.put_bytes("before.txt", b"kept")
    part = os.urandom(5 * MiB)
    w = store.open_writer("export/data.bin")
    w.write(part)
    w.write(part)
    s3_server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(StorageError) as info:
            for _ in range(20):
                w.write(part)
            w.close()
        assert time.monotonic() - started < 30
        msg = _assert_clean(info.value, secret=s3_server.secret_key)
        assert "export/data.bin" in msg and "cannot reach" in msg and "retries" in msg
        w.abort()
    finally:
        s3_server.start()

    assert not store.exists("export/data.bin")
    assert store.get_bytes("before.txt") == b"kept"
    w = store.open_writer("export/data.bin")
    for _ in range(3):
        w.write(part)
    w.close()
    assert store.get_bytes("export/data.bin") == part * 3


# -- Azure specifics (Azurite; skipped when it is not installed) ---------------------------


def test_azure_signed_url_and_errors(azurite_server, azure_container) -> None:
    store = open_store(f"az://{azure_container}/{_unique()}", **azurite_server.options())
    store.put_bytes("s.txt", b"azure bytes")
    url = store.signed_url("s.txt", timedelta(minutes=5))
    assert url is not None
    r = httpx.get(url)
    assert r.status_code == 200 and r.content == b"azure bytes"
    assert httpx.get(url.replace("s.txt", "t.txt")).status_code in (403, 404)

    bad_key = "YmFka2V5YmFka2V5YmFka2V5YmFka2V5YmFka2V5YmFka2V5"
    bad = open_store(f"az://{azure_container}/x", **azurite_server.options(account_key=bad_key))
    with pytest.raises(StorageError) as info:
        bad.get_bytes("s.txt")
    assert "authentication failed" in _assert_clean(info.value, secret=bad_key)

    missing = open_store("az://no-such-container/p", **azurite_server.options())
    with pytest.raises(StorageError) as info:
        missing.get_bytes("s.txt")
    msg = _assert_clean(info.value)
    assert "no-such-container" in msg and "does not exist" in msg


def test_throttling_is_retried_with_backoff() -> None:
    """429s (GCS's throttling answer) are retried here; obstore retries 5xx/SlowDown itself."""
    store = open_store("s3://bucket/p", max_retries=3, initial_backoff=0.01, retry_timeout=5)
    calls: list[float] = []

    def throttled_twice() -> str:
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise GenericError("Generic GCS error: Server returned non-2xx status code: 429 Too Many Requests: "
                               '{"error": {"message": "rateLimitExceeded"}}')
        return "ok"

    assert store._with_retries(throttled_twice) == "ok"
    assert len(calls) == 3

    def always_throttled() -> None:
        calls.append(time.monotonic())
        raise GenericError("status code: 429 Too Many Requests")

    calls.clear()
    with pytest.raises(GenericError):
        store._with_retries(always_throttled)
    assert len(calls) == 4  # the first try and max_retries=3 more

    def denied() -> None:
        calls.append(time.monotonic())
        raise PermissionDeniedError("status code: 403 Forbidden")

    calls.clear()
    with pytest.raises(PermissionDeniedError):
        store._with_retries(denied)
    assert len(calls) == 1  # not retried
