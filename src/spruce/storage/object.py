"""S3, GCS and Azure Blob Storage as a Store, through obstore.

Guarantees the archive format relies on:

* ``open_writer`` streams in bounded memory. Small objects (under one part) are sent with a
  single PUT on close; larger ones become a multipart upload (S3 multipart, GCS XML multipart,
  Azure block list) with up to ``max_concurrency`` parts in flight. The object only exists
  once the upload is completed by ``close()``; ``abort()`` aborts the multipart upload.
* ``put_bytes`` is one PUT: atomic.
* Every request is retried with exponential backoff on 5xx, throttling, dropped connections
  and timeouts (``max_retries`` / ``retry_timeout``).
* Every failure surfaces as a one-line ``StorageError`` naming the credential-free URI and
  the cause (see ``describe_storage_error``); missing objects raise ``FileNotFoundError``.

Credentials come from each service's standard chain, never from the URI:

* S3: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``, web identity
  (``AWS_WEB_IDENTITY_TOKEN_FILE``), the shared credentials/config files for ``AWS_PROFILE``
  (static keys only), ECS/EKS container credentials and EC2 instance roles. ``AWS_ENDPOINT_URL``
  (or ``endpoint_url=``) points at S3-compatible stores (MinIO, SeaweedFS, R2).
* GCS: ``GOOGLE_APPLICATION_CREDENTIALS`` / ``GOOGLE_SERVICE_ACCOUNT``, or the metadata server.
* Azure: ``AZURE_STORAGE_ACCOUNT_KEY``, ``AZURE_STORAGE_SAS_TOKEN``, service principal env
  vars, workload/managed identity, or the Azure CLI.
"""

from __future__ import annotations

import configparser
import errno
import io
import os
import queue
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import obstore
from obstore.exceptions import (
    AlreadyExistsError,
    BaseError,
    InvalidPathError,
    NotSupportedError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
    UnknownConfigurationKeyError,
)

from spruce.errors import InvalidArgument, StorageError
from spruce.storage.base import ObjectInfo, Store
from spruce.storage.uri import StorageURI, parse_storage_uri

__all__ = ["ObjectStore", "ObjectStoreOptions", "describe_storage_error"]

T = TypeVar("T")

MiB = 1024 * 1024
_S3_MIN_PART = 5 * MiB
_SECRET_ENV_VARS = (
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_ACCESS_KEY", "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_SAS_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_CLIENT_SECRET", "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_STORAGE_TOKEN", "GOOGLE_SERVICE_ACCOUNT_KEY", "GOOGLE_BEARER_TOKEN",
)
_SSE_VALUES = {"AES256": "AES256", "aws:kms": "aws:kms", "aws:kms:dsse": "aws:kms:dsse"}


@dataclass(frozen=True)
class ObjectStoreOptions:
    """Connection settings for an ObjectStore; every field is an ``open_store`` keyword.

    Secrets given here (``secret_access_key``, ``account_key`` ...) are used for requests and
    scrubbed from error messages; they never become part of ``Store.uri``.
    """

    # -- where ---------------------------------------------------------------------------
    endpoint_url: str | None = None  # S3-compatible endpoint / GCS base URL / Azure blob endpoint
    region: str | None = None  # S3 region; default AWS_REGION, AWS_DEFAULT_REGION, us-east-1
    allow_http: bool | None = None  # default: True exactly when endpoint_url is http://
    virtual_hosted_style: bool | None = None  # S3 bucket-in-hostname addressing
    # -- credentials (all optional: the environment / instance chain is the normal way) -----
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    profile: str | None = None  # AWS shared-config profile; default AWS_PROFILE
    anonymous: bool = False  # unsigned requests (public buckets)
    account_name: str | None = None  # Azure storage account (az:// URIs)
    account_key: str | None = None  # Azure shared key
    sas_token: str | None = None  # Azure SAS token
    use_emulator: bool = False  # Azure: Azurite's well-known account
    service_account_path: str | None = None  # GCS service-account JSON file
    # -- server-side encryption (S3) --------------------------------------------------------
    sse: str | None = None  # "AES256" (SSE-S3), "aws:kms" (SSE-KMS), "aws:kms:dsse"
    sse_kms_key_id: str | None = None  # implies sse="aws:kms" when sse is unset
    # -- robustness -----------------------------------------------------------------------
    max_retries: int = 10
    retry_timeout: float = 180.0  # seconds from a request's first attempt to its last retry
    timeout: float = 120.0  # seconds for one whole request (a part upload, a ranged read)
    connect_timeout: float = 5.0
    initial_backoff: float = 0.1
    max_backoff: float = 15.0
    # -- throughput / memory ----------------------------------------------------------------
    part_size: int = 8 * MiB  # multipart part size; at most 10,000 parts per object on S3
    max_concurrency: int = 4  # parts uploaded in parallel per writer
    read_buffer_size: int = 8 * MiB  # bytes per ranged GET when streaming reads
    signed_url_expiry: timedelta = field(default=timedelta(hours=1))

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> ObjectStoreOptions:
        known = {f.name for f in fields(cls)}
        aliases = {"endpoint": "endpoint_url", "retries": "max_retries", "aws_profile": "profile"}
        values: dict[str, Any] = {}
        for key, value in options.items():
            name = aliases.get(key, key)
            if name not in known:
                raise InvalidArgument(
                    f"unknown storage option {key!r}; known options: {', '.join(sorted(known))}"
                )
            if value is not None:
                values[name] = value
        expiry = values.get("signed_url_expiry")
        if expiry is not None and not isinstance(expiry, timedelta):
            values["signed_url_expiry"] = timedelta(seconds=float(expiry))
        opts = cls(**values)
        opts.validate()
        return opts

    def validate(self) -> None:
        if self.max_retries < 0:
            raise InvalidArgument("storage option max_retries must be >= 0")
        for name in ("retry_timeout", "timeout", "connect_timeout"):
            if float(getattr(self, name)) <= 0:
                raise InvalidArgument(f"storage option {name} must be > 0 seconds")
        if self.part_size < _S3_MIN_PART:
            raise InvalidArgument(f"storage option part_size must be at least {_S3_MIN_PART} bytes (5 MiB)")
        if self.max_concurrency < 1:
            raise InvalidArgument("storage option max_concurrency must be >= 1")
        if self.sse is not None and self.sse not in _SSE_VALUES:
            raise InvalidArgument(
                f"storage option sse must be one of {', '.join(sorted(_SSE_VALUES))}, not {self.sse!r}"
            )
        if self.sse_kms_key_id and self.sse not in (None, "aws:kms", "aws:kms:dsse"):
            raise InvalidArgument("storage option sse_kms_key_id needs sse='aws:kms' (or 'aws:kms:dsse')")

    def secrets(self) -> list[str]:
        """Every secret this store may use (options and environment), to scrub from messages."""
        env = [os.environ.get(v) for v in _SECRET_ENV_VARS]
        return [s for s in (self.secret_access_key, self.session_token, self.account_key, self.sas_token, *env) if s]


# -- error translation -----------------------------------------------------------------------

_XML_CODE = re.compile(r"<Code>\s*([^<]+?)\s*</Code>")
_XML_MESSAGE = re.compile(r"<Message>\s*([^<]+?)\s*</Message>")
_JSON_MESSAGE = re.compile(r'"message"\s*:\s*"([^"]+)"')
_STATUS = re.compile(r"(?:status code|status):?\s*(\d{3})")
_RETRIES = re.compile(r"after (\d+) retries")
_URL_IN_TEXT = re.compile(r"(https?://)([^/\s@]+@)?([^/\s?]+)")

_AUTH_CODES = {
    "SignatureDoesNotMatch": "the secret key is wrong (the request signature does not match)",
    "InvalidAccessKeyId": "the access key id is not known to the server",
    "InvalidToken": "the session token is invalid",
    "ExpiredToken": "the session token has expired",
    "TokenRefreshRequired": "the session token must be refreshed",
    "AuthenticationFailed": "authentication failed (wrong account key or SAS token)",
    "AuthorizationFailure": "authorization failed",
    "InvalidAuthenticationInfo": "the authentication information is invalid",
    "RequestTimeTooSkewed": "the local clock differs too much from the server's",
}
_MISSING_BUCKET_CODES = {"NoSuchBucket", "ContainerNotFound", "InvalidBucketName", "BucketNotFound"}


def _scrub(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    # userinfo inside any URL, and pre-signed query strings
    text = _URL_IN_TEXT.sub(lambda m: m.group(1) + m.group(3), text)
    text = re.sub(r"(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s]+", r"\1***", text)
    text = re.sub(r"([?&](?:sig|se|sv|sp|st|spr|srt|ss|sr)=)[^&\s]+", r"\1***", text)
    return text


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_storage_error(
    exc: BaseException,
    uri: str,
    *,
    path: str | None = None,
    bucket: str | None = None,
    endpoint: str | None = None,
    secrets: list[str] | tuple[str, ...] = (),
) -> StorageError:
    """Turn an obstore (or OS) exception into a one-line StorageError naming ``uri`` and the cause.

    ``uri`` must already be credential-free (``Store.uri``). Nothing from the traceback or the
    debug dump obstore appends is kept; known ``secrets`` are scrubbed from what remains.
    """
    if isinstance(exc, StorageError):
        return exc
    raw = str(exc)
    head = raw.split("\n\nDebug source:", 1)[0]
    # obstore's retry summary ("max_retries: 3, retry_timeout: 10s") says nothing about the cause
    head = re.sub(r"max_retries: \d+, retry_timeout: [^ ,-]+", "", head)
    where = f"{uri.rstrip('/')}/{path}" if path else uri
    code_m = _XML_CODE.search(head)
    code = code_m.group(1) if code_m else None
    msg_m = _XML_MESSAGE.search(head) or _JSON_MESSAGE.search(head)
    server_msg = msg_m.group(1) if msg_m else None
    status_m = _STATUS.search(head)
    status = int(status_m.group(1)) if status_m else None
    retries_m = _RETRIES.search(head)
    retried = f" after {retries_m.group(1)} retries" if retries_m and retries_m.group(1) != "0" else ""
    low = head.lower()
    at = f" at {endpoint}" if endpoint else ""
    bucket_part = f" {bucket!r}" if bucket else ""

    def detail() -> str:
        bits = [b for b in (code, server_msg) if b]
        return f" ({': '.join(bits)})" if bits else ""

    if code in _MISSING_BUCKET_CODES or "bucket does not exist" in low or "container does not exist" in low:
        kind = "container" if code == "ContainerNotFound" else "bucket"
        if code == "InvalidBucketName":
            text = f"{where}: the {kind}{bucket_part} name is not valid on this server{detail()}"
        else:
            text = f"{where}: the {kind}{bucket_part} does not exist{at}"
    elif code in _AUTH_CODES:
        text = f"{where}: authentication failed: {_AUTH_CODES[code]} ({code}); check the storage credentials"
    elif isinstance(exc, UnauthenticatedError) or status == 401:
        text = f"{where}: authentication failed{detail()}; check the storage credentials"
    elif isinstance(exc, PermissionDeniedError) or status == 403 or code == "AccessDenied":
        text = (
            f"{where}: access denied{detail()}; the credentials in use (if any) lack permission "
            "for this bucket or prefix"
        )
    elif "error sending request" in low or "connect error" in low or "dns error" in low:
        # the cause is only in obstore's debug dump, which is read here but never shown
        dump = raw.lower()
        if "dns error" in dump or "lookup address" in dump:
            cause = "the endpoint's host name does not resolve"
        elif "connection refused" in dump or "connectionrefused" in dump:
            cause = "connection refused"
        elif "connection reset" in dump or "connectionreset" in dump:
            cause = "connection reset"
        elif "timed out" in dump or "timedout" in dump:
            cause = "connection timed out"
        else:
            cause = "the endpoint is unreachable"
        text = f"{where}: cannot reach the storage endpoint{at}: {cause}{retried}"
    elif "timed out" in low or "timeout" in low or "deadline" in low:
        text = f"{where}: the storage request timed out{at}{retried}"
    elif (status is not None and status >= 500) or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
        text = f"{where}: the storage server failed with HTTP {status or '5xx'}{detail()}{retried}"
    elif status == 429 or code in ("Throttling", "ThrottlingException", "TooManyRequests"):
        text = f"{where}: the storage server is throttling requests{detail()}{retried}"
    elif isinstance(exc, FileNotFoundError):
        text = f"{where}: object not found"
    elif isinstance(exc, UnknownConfigurationKeyError):
        text = f"{where}: invalid storage configuration: {_one_line(head, 200)}"
    elif isinstance(exc, (AlreadyExistsError, PreconditionError)):
        text = f"{where}: the object changed or already exists{detail()}"
    elif isinstance(exc, (InvalidPathError, NotSupportedError)):
        text = f"{where}: {_one_line(head, 200)}"
    elif "credential" in low or ("metadata" in low and "token" in low):
        text = (
            f"{where}: could not obtain storage credentials ({_one_line(head, 160)}); set them in the "
            "environment (e.g. AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) or use anonymous access"
        )
    elif status is not None:
        text = f"{where}: the storage server answered HTTP {status}{detail()}"
    elif isinstance(exc, OSError) and not isinstance(exc, BaseError):
        text = f"{where}: {exc.strerror or type(exc).__name__}"
    else:
        first = head.split(" - ", 1)[-1] if " - " in head else head
        text = f"{where}: {type(exc).__name__}: {_one_line(first, 200)}"
    err = StorageError(_one_line(_scrub(text, secrets), 500))
    err.__cause__ = None
    return err


# -- AWS shared config (obstore reads env vars and instance roles, not ~/.aws files) -----------


def _aws_profile_settings(profile: str | None) -> dict[str, str]:
    """Static keys and region of an AWS shared-config profile, or {} when there is none."""
    name = profile or os.environ.get("AWS_PROFILE") or os.environ.get("AWS_DEFAULT_PROFILE")
    explicit = name is not None
    name = name or "default"
    creds_file = Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")).expanduser()
    config_file = Path(os.environ.get("AWS_CONFIG_FILE", "~/.aws/config")).expanduser()
    out: dict[str, str] = {}
    found = False
    for file, section in ((config_file, "default" if name == "default" else f"profile {name}"),
                          (creds_file, name)):
        parser = configparser.RawConfigParser()
        try:
            parser.read(file)
        except (OSError, configparser.Error):
            continue
        if not parser.has_section(section):
            continue
        found = True
        for key in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "region"):
            if parser.has_option(section, key):
                out[key] = parser.get(section, key).strip()
    if explicit and not found:
        raise StorageError(f"AWS profile {name!r} not found in {creds_file} or {config_file}")
    return out


# -- the writer ------------------------------------------------------------------------------

_END = object()


class _Aborted(Exception):
    """Raised into obstore's part iterator so that it aborts the multipart upload."""


class _UploadState:
    """Shared by a writer and its upload thread (the thread never references the writer)."""

    def __init__(self, depth: int) -> None:
        self.parts: queue.Queue[object] = queue.Queue(maxsize=depth)
        self.abort = threading.Event()
        self.error: BaseException | None = None
        self.done = threading.Event()

    def chunks(self) -> Iterator[bytes]:
        while True:
            if self.abort.is_set():
                raise _Aborted()
            try:
                item = self.parts.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is _END:
                return
            yield item  # type: ignore[misc]


class _ObjectWriter:
    """Buffers ``part_size`` bytes; the first full part starts a parallel multipart upload.

    Memory is bounded by about ``(max_concurrency + 3) * part_size``: the part being filled,
    two queued parts and the parts in flight.
    """

    def __init__(self, store: ObjectStore, key: str) -> None:
        self._store = store
        self._key = key
        self._part = store.options.part_size
        self._buf = bytearray()
        self._state: _UploadState | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._finalizer: weakref.finalize | None = None

    # Writer protocol
    def write(self, data: bytes | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a closed writer")
        self._raise_if_failed()
        n = len(data)
        self._buf += data
        while len(self._buf) >= self._part:
            chunk = bytes(self._buf[: self._part])
            del self._buf[: self._part]
            self._send(chunk)
        return n

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._state is None:  # small object: one atomic PUT
            data, self._buf = bytes(self._buf), bytearray()
            self._store.put_bytes(self._key, data)
            return
        try:
            if self._buf:
                self._send(bytes(self._buf))
            self._buf = bytearray()
            self._send(_END)
            assert self._thread is not None
            self._thread.join()
            self._raise_if_failed()
        except BaseException:
            self._stop(join_timeout=self._store.options.retry_timeout)
            raise

    def abort(self) -> None:
        self._buf = bytearray()
        if self._closed and self._state is None:
            return
        self._closed = True
        self._stop(join_timeout=self._store.options.retry_timeout)

    def __enter__(self) -> _ObjectWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # internals
    def _start(self) -> None:
        opts = self._store.options
        state = _UploadState(depth=2)
        store, key, uri, part = self._store._inner, self._key, self._store.uri, self._part
        describe = self._store._describe

        def run() -> None:
            try:
                obstore.put(
                    store, key, state.chunks(), use_multipart=True,
                    chunk_size=part, max_concurrency=opts.max_concurrency,
                )
            except _Aborted:
                pass
            except BaseException as exc:
                if not state.abort.is_set():
                    state.error = describe(exc, key)
            finally:
                state.done.set()

        self._state = state
        self._thread = threading.Thread(target=run, name=f"spruce-upload:{uri}/{key}", daemon=True)
        self._thread.start()
        # An abandoned writer (never closed or aborted) must not leave a thread waiting forever.
        self._finalizer = weakref.finalize(self, state.abort.set)

    def _send(self, item: object) -> None:
        if self._state is None:
            self._start()
        state = self._state
        assert state is not None
        while True:
            self._raise_if_failed()
            if state.done.is_set():  # finished without error but still fed: cannot happen
                raise StorageError(f"{self._store.uri}/{self._key}: upload ended early")
            try:
                state.parts.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _raise_if_failed(self) -> None:
        if self._state is not None and self._state.error is not None:
            err = self._state.error
            raise StorageError(str(err))

    def _stop(self, join_timeout: float) -> None:
        if self._state is None:
            return
        self._state.abort.set()
        if self._thread is not None:
            self._thread.join(timeout=join_timeout)


# -- the reader ------------------------------------------------------------------------------


class _ObjectReader(io.RawIOBase):
    """A file-like view over obstore's ranged reader that maps errors to StorageError."""

    def __init__(self, inner: Any, describe: Any, key: str) -> None:
        super().__init__()
        self._inner = inner
        self._describe = describe
        self._key = key

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        self._checkClosed()
        try:
            if size is None or size < 0:
                return bytes(self._inner.read())
            return bytes(self._inner.read(size))
        except Exception as exc:
            raise self._describe(exc, self._key) from None

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        n = len(data)
        memoryview(b).cast("B")[:n] = data
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        self._checkClosed()
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        self._checkClosed()
        return self._inner.tell()

    @property
    def size(self) -> int:
        return self._inner.size

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
        super().close()


# -- the store -------------------------------------------------------------------------------


class ObjectStore(Store):
    """A Store over an S3 bucket, a GCS bucket or an Azure container, rooted at a key prefix."""

    def __init__(self, uri: str | StorageURI, options: ObjectStoreOptions | None = None, **kwargs: Any) -> None:
        self.location = uri if isinstance(uri, StorageURI) else parse_storage_uri(uri)
        if self.location.is_local:
            raise InvalidArgument("ObjectStore needs an s3://, gs:// or az:// URI; use LocalStore for folders")
        if options is None:
            options = ObjectStoreOptions.from_mapping(kwargs)
        elif kwargs:
            options = ObjectStoreOptions.from_mapping({**_options_dict(options), **kwargs})
        self.options = options
        self.uri = str(self.location)
        self._secrets: list[str] = options.secrets()
        self.endpoint: str | None = None
        self._inner = self._build()

    # -- construction ----------------------------------------------------------------------
    def _client_options(self, endpoint: str | None) -> dict[str, Any]:
        o = self.options
        allow_http = o.allow_http if o.allow_http is not None else bool(endpoint and endpoint.startswith("http://"))
        return {
            "allow_http": allow_http,
            "timeout": timedelta(seconds=o.timeout),
            "connect_timeout": timedelta(seconds=o.connect_timeout),
            "user_agent": "spruce",
        }

    def _retry_config(self) -> dict[str, Any]:
        o = self.options
        return {
            "max_retries": int(o.max_retries),
            "retry_timeout": timedelta(seconds=o.retry_timeout),
            "backoff": {
                "init_backoff": timedelta(seconds=o.initial_backoff),
                "max_backoff": timedelta(seconds=o.max_backoff),
                "base": 2,
            },
        }

    def _build(self) -> Any:
        from obstore.store import AzureStore, GCSStore, S3Store

        loc, o = self.location, self.options
        prefix = loc.prefix or None
        try:
            if loc.scheme == "s3":
                config = self._s3_config()
                self.endpoint = config.get("endpoint")
                return S3Store(
                    loc.bucket, prefix=prefix, config=config,
                    client_options=self._client_options(self.endpoint), retry_config=self._retry_config(),
                )
            if loc.scheme == "gs":
                config: dict[str, Any] = {}
                self.endpoint = o.endpoint_url or os.environ.get("GOOGLE_BASE_URL")
                if self.endpoint:
                    config["base_url"] = self.endpoint.rstrip("/")
                if o.service_account_path:
                    config["service_account"] = o.service_account_path
                if o.anonymous:
                    config["skip_signature"] = True
                return GCSStore(
                    loc.bucket, prefix=prefix, config=config,
                    client_options=self._client_options(self.endpoint), retry_config=self._retry_config(),
                )
            config = {}
            account = loc.account or o.account_name or os.environ.get("AZURE_STORAGE_ACCOUNT_NAME")
            if o.use_emulator:
                config["use_emulator"] = True
                account = account or "devstoreaccount1"
            if not account:
                raise InvalidArgument(
                    f"{self.uri}: no Azure storage account: use https://ACCOUNT.blob.core.windows.net/"
                    "CONTAINER, the account_name option or AZURE_STORAGE_ACCOUNT_NAME"
                )
            config["account_name"] = account
            self.endpoint = o.endpoint_url or os.environ.get("AZURE_STORAGE_ENDPOINT")
            if self.endpoint:
                config["endpoint"] = self.endpoint.rstrip("/")
            if o.account_key:
                config["account_key"] = o.account_key
            if o.sas_token:
                config["sas_key"] = o.sas_token
            if o.anonymous:
                config["skip_signature"] = True
            return AzureStore(
                loc.bucket, prefix=prefix, config=config,
                client_options=self._client_options(self.endpoint), retry_config=self._retry_config(),
            )
        except (InvalidArgument, StorageError):
            raise
        except Exception as exc:
            raise self._describe(exc) from None

    def _s3_config(self) -> dict[str, Any]:
        o, env = self.options, os.environ
        config: dict[str, Any] = {}
        endpoint = o.endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or env.get(
            "AWS_ENDPOINT"
        )
        if endpoint:
            config["endpoint"] = endpoint.rstrip("/")
        region = o.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if o.anonymous:
            config["skip_signature"] = True
        elif o.access_key_id or o.secret_access_key:
            if not (o.access_key_id and o.secret_access_key):
                raise InvalidArgument("storage options access_key_id and secret_access_key go together")
            config["access_key_id"] = o.access_key_id
            config["secret_access_key"] = o.secret_access_key
            if o.session_token:
                config["session_token"] = o.session_token
        elif not env.get("AWS_ACCESS_KEY_ID") and not env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
            # Environment keys win (obstore reads them itself); next in the standard chain
            # come the shared credentials/config files, then container and instance roles.
            profile = _aws_profile_settings(o.profile)
            if profile.get("aws_access_key_id") and profile.get("aws_secret_access_key"):
                config["access_key_id"] = profile["aws_access_key_id"]
                config["secret_access_key"] = profile["aws_secret_access_key"]
                self._secrets.append(profile["aws_secret_access_key"])
                if profile.get("aws_session_token"):
                    config["session_token"] = profile["aws_session_token"]
                    self._secrets.append(profile["aws_session_token"])
            region = region or profile.get("region")
        config["region"] = region or "us-east-1"
        if o.virtual_hosted_style is not None:
            config["virtual_hosted_style_request"] = o.virtual_hosted_style
        sse = o.sse or ("aws:kms" if o.sse_kms_key_id else None)
        if sse:
            config["server_side_encryption"] = sse
        if o.sse_kms_key_id:
            config["sse_kms_key_id"] = o.sse_kms_key_id
        return config

    # -- helpers ---------------------------------------------------------------------------
    def _describe(self, exc: BaseException, path: str | None = None) -> StorageError:
        return describe_storage_error(
            exc, self.uri, path=path, bucket=self.location.bucket, endpoint=self.endpoint, secrets=self._secrets
        )

    def _key(self, path: str) -> str:
        parts = [p for p in path.replace("\\", "/").split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise ValueError(f"path {path!r} is not a valid object path below the store root {self.uri}")
        return "/".join(parts)

    def _not_found(self, exc: BaseException, key: str) -> BaseException:
        """FileNotFoundError for a missing object; StorageError when the bucket itself is missing."""
        text = str(exc).split("\n\nDebug source:", 1)[0]
        code = _XML_CODE.search(text)
        if code and code.group(1) in _MISSING_BUCKET_CODES:
            return self._describe(exc, key)
        return FileNotFoundError(errno.ENOENT, "no such object", f"{self.uri}/{key}")

    def _with_retries(self, fn: Callable[[], T], *, retry_timeouts: bool = False) -> T:
        """Run ``fn``, retrying what obstore itself does not: HTTP 429 throttling (GCS answers
        429; S3 and Azure throttle with 503, which obstore retries) and, for idempotent writes,
        request timeouts. Same budget as obstore's retries: max_retries within retry_timeout."""
        o = self.options
        deadline = time.monotonic() + o.retry_timeout
        delay = o.initial_backoff
        attempt = 0
        while True:
            try:
                return fn()
            except FileNotFoundError:
                raise
            except Exception as exc:
                if attempt >= o.max_retries or not _retry_worthy(exc, retry_timeouts):
                    raise
                pause = random.uniform(delay / 2, delay)
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                delay = min(delay * 2, o.max_backoff)
                attempt += 1

    def _check_container(self, key: str) -> None:
        """After a body-less 404 (HEAD): raise StorageError if the bucket itself is missing.

        A HEAD cannot tell a missing object from a missing bucket; a one-item listing can.
        """
        try:
            next(iter(obstore.list(self._inner, prefix=key, chunk_size=1)), None)
        except FileNotFoundError as exc:
            err = self._not_found(exc, key)
            if isinstance(err, StorageError):
                raise err from None
        except Exception as exc:
            raise self._describe(exc, key) from None

    # -- Store API ---------------------------------------------------------------------------
    def open_writer(self, path: str) -> _ObjectWriter:
        return _ObjectWriter(self, self._key(path))

    def put_bytes(self, path: str, data: bytes) -> None:
        key = self._key(path)
        payload = bytes(data)
        try:
            # A whole-object PUT of the same bytes is idempotent, so timeouts are retried too.
            self._with_retries(
                lambda: obstore.put(self._inner, key, payload, use_multipart=False), retry_timeouts=True
            )
        except Exception as exc:
            raise self._describe(exc, key) from None

    def open_reader(self, path: str) -> BinaryIO:
        key = self._key(path)
        try:
            inner = obstore.open_reader(self._inner, key, buffer_size=self.options.read_buffer_size)
        except FileNotFoundError as exc:
            self._check_container(key)
            raise self._not_found(exc, key) from None
        except Exception as exc:
            raise self._describe(exc, key) from None
        return _ObjectReader(inner, self._describe, key)  # type: ignore[return-value]

    def get_bytes(self, path: str) -> bytes:
        key = self._key(path)
        try:
            return self._with_retries(lambda: bytes(obstore.get(self._inner, key).bytes()))
        except FileNotFoundError as exc:
            raise self._not_found(exc, key) from None
        except Exception as exc:
            raise self._describe(exc, key) from None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        key_prefix = "/".join(p for p in prefix.replace("\\", "/").split("/") if p)
        if any(p in (".", "..") for p in key_prefix.split("/")):
            raise ValueError(f"prefix {prefix!r} escapes the store root {self.uri}")
        found = False
        try:
            for chunk in obstore.list(self._inner, prefix=key_prefix or None, chunk_size=1000):
                for meta in chunk:
                    found = True
                    yield ObjectInfo(meta["path"], int(meta["size"]))
            if not found and key_prefix:  # the prefix may name a single object
                try:
                    meta = obstore.head(self._inner, key_prefix)
                except FileNotFoundError:
                    return
                yield ObjectInfo(key_prefix, int(meta["size"]))
        except FileNotFoundError as exc:
            err = self._not_found(exc, key_prefix)
            if isinstance(err, FileNotFoundError):
                return
            raise err from None
        except Exception as exc:
            raise self._describe(exc, key_prefix or None) from None

    def exists(self, path: str) -> bool:
        key = self._key(path)
        try:
            self._with_retries(lambda: obstore.head(self._inner, key))
        except FileNotFoundError:
            self._check_container(key)
            return False
        except Exception as exc:
            raise self._explain_head_error(exc, key) from None
        return True

    def _explain_head_error(self, exc: BaseException, key: str) -> StorageError:
        """A HEAD answer has no body, so a refusal says only "403": a wrong secret and a missing
        permission look alike. A one-item listing gets the server's error code to tell them apart."""
        err = self._describe(exc, key)
        if _XML_CODE.search(str(exc).split("\n\nDebug source:", 1)[0]) or not isinstance(
                exc, (PermissionDeniedError, UnauthenticatedError)):
            return err
        try:
            next(iter(obstore.list(self._inner, prefix=key, chunk_size=1)), None)
        except Exception as probe:
            better = self._describe(probe, key)
            if "authentication failed" in str(better) or "does not exist" in str(better):
                return better
        return err

    def delete(self, path: str) -> None:
        key = self._key(path)
        try:
            self._with_retries(lambda: obstore.delete(self._inner, key))
        except FileNotFoundError:
            return
        except Exception as exc:
            raise self._describe(exc, key) from None

    def delete_prefix(self, prefix: str) -> int:
        paths = [info.path for info in self.list(prefix)]
        for i in range(0, len(paths), 1000):
            batch = paths[i : i + 1000]
            try:
                obstore.delete(self._inner, batch)
            except FileNotFoundError:
                continue
            except Exception as exc:
                raise self._describe(exc, prefix or None) from None
        return len(paths)

    def signed_url(self, path: str, expires: timedelta | float | None = None) -> str | None:
        """A pre-signed GET URL valid for ``expires`` (default ``signed_url_expiry``, 1 hour).

        Returns None for anonymous stores, which hold no key to sign with.
        """
        if self.options.anonymous:
            return None
        key = self._key(path)
        if expires is None:
            expires = self.options.signed_url_expiry
        elif not isinstance(expires, timedelta):
            expires = timedelta(seconds=float(expires))
        if expires <= timedelta(0):
            raise InvalidArgument("signed URL expiry must be positive")
        if self.location.scheme == "s3" and expires > timedelta(days=7):
            raise InvalidArgument("S3 signed URLs are valid for at most 7 days")
        try:
            return obstore.sign(self._inner, "GET", key, expires)
        except Exception as exc:
            raise self._describe(exc, key) from None

    def child(self, prefix: str) -> ObjectStore:
        return ObjectStore(self.location.child(prefix), self.options)

    def __repr__(self) -> str:
        return f"ObjectStore({self.uri!r})"


def _options_dict(options: ObjectStoreOptions) -> dict[str, Any]:
    return {f.name: getattr(options, f.name) for f in fields(options)}


_THROTTLE_CODES = ("TooManyRequests", "rateLimitExceeded", "SlowDown", "Throttling", "RequestLimitExceeded")


def _retry_worthy(exc: BaseException, retry_timeouts: bool) -> bool:
    """Errors obstore gave up on at once but that a later attempt may well survive."""
    if not isinstance(exc, BaseError):
        return False
    raw = str(exc)
    head = raw.split("\n\nDebug source:", 1)[0]
    status = _STATUS.search(head)
    if (status and status.group(1) == "429") or any(c in head for c in _THROTTLE_CODES):
        return True
    if retry_timeouts:
        dump = raw.lower()
        return "timed out" in dump or "timedout" in dump or "kind: timeout" in dump
    return False
