"""Storage URIs, parsed into a small typed value.

Accepted forms::

    /plain/path   relative/path   C:\\windows\\path     -> file
    file:///abs/path   file://localhost/abs/path          -> file
    s3://bucket/prefix                                    -> s3
    gs://bucket/prefix                                    -> gs
    az://container/prefix                                 -> az (account from options/env)
    https://ACCOUNT.blob.core.windows.net/container/prefix -> az (account from the host)

Credentials never travel inside a URI: a URI with userinfo (``s3://KEY:SECRET@bucket``) or a
query string (an Azure SAS token, a pre-signed S3 query) is refused with an error that does
not repeat the URI, so a secret pasted by mistake never reaches a log, a job status or a
manifest. ``str(StorageURI)`` is the canonical, credential-free form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from spruce.errors import InvalidArgument

Scheme = Literal["file", "s3", "gs", "az"]

_SCHEME_ALIASES: dict[str, Scheme] = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gs",
    "gcs": "gs",
    "az": "az",
    "azure": "az",
}
# Bucket and container names across S3, GCS and Azure (S3-compatible stores are laxer than
# AWS, so this only rules out what no store accepts and what could hide a credential).
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,221}$")
_AZURE_HOST_RE = re.compile(r"^([a-z0-9]{3,24})\.blob\.core\.windows\.net$")
_WINDOWS_DRIVE_RE = re.compile(r"^[A-Za-z]:[\\/]")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")

_NO_CREDENTIALS = (
    "credentials embedded in a storage URI are not accepted (the URI is not repeated here "
    "so the secret does not spread further); remove them from the URI and provide them "
    "through the environment instead: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) "
    "for s3://, GOOGLE_APPLICATION_CREDENTIALS for gs://, AZURE_STORAGE_ACCOUNT_KEY or "
    "AZURE_STORAGE_SAS_TOKEN for az://"
)


@dataclass(frozen=True, slots=True)
class StorageURI:
    """Where a store lives. Holds no secrets, so it is safe to print, log and persist."""

    scheme: Scheme
    #: Bucket (s3, gs) or container (az); empty for local folders.
    bucket: str = ""
    #: Key prefix inside the bucket, '/'-separated, without leading or trailing '/'.
    #: For local folders: the filesystem path as given.
    prefix: str = ""
    #: Azure storage account, when the URI names it (https://ACCOUNT.blob.core.windows.net/...).
    account: str | None = None

    @property
    def is_local(self) -> bool:
        return self.scheme == "file"

    @property
    def path(self) -> Path:
        """The local folder (file URIs only)."""
        if not self.is_local:
            raise ValueError(f"{self} is not a local path")
        return Path(self.prefix).expanduser()

    def child(self, prefix: str) -> StorageURI:
        """This URI with ``prefix`` appended below its own prefix."""
        extra = _clean_key_prefix(prefix)
        if not extra:
            return self
        if self.is_local:
            return replace(self, prefix=str(Path(self.prefix) / extra))
        joined = f"{self.prefix}/{extra}" if self.prefix else extra
        return replace(self, prefix=joined)

    def __str__(self) -> str:
        if self.is_local:
            return self.path.absolute().as_uri()
        tail = f"/{self.prefix}" if self.prefix else ""
        if self.scheme == "az" and self.account:
            return f"https://{self.account}.blob.core.windows.net/{self.bucket}{tail}"
        return f"{self.scheme}://{self.bucket}{tail}"


def _clean_key_prefix(prefix: str) -> str:
    """Normalise an object-key prefix; refuse '.'/'..' segments that would escape the root."""
    parts = [p for p in prefix.replace("\\", "/").split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise InvalidArgument(f"storage prefix {prefix!r} may not contain '.' or '..' segments")
    return "/".join(parts)


def parse_storage_uri(uri: str) -> StorageURI:
    """Parse ``uri``; raise InvalidArgument (never echoing credentials) when it is not usable."""
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidArgument("storage URI is empty")
    uri = uri.strip()
    scheme_m = _SCHEME_RE.match(uri)
    if _WINDOWS_DRIVE_RE.match(uri) or not scheme_m:
        return StorageURI("file", prefix=uri)

    scheme_l = scheme_m.group(1).lower()
    rest = uri[scheme_m.end() :]
    if scheme_l == "file":
        return _parse_file(uri)

    if not rest.startswith("//"):
        raise InvalidArgument(f"storage URI scheme {scheme_l!r} needs '//' after the colon")
    authority = rest[2:].split("/", 1)[0]
    # Bucket, container and host names never contain '@' or ':' (a port excepted, below), so
    # either one in the first segment means userinfo. Checking the raw text (not urlsplit's
    # netloc) also catches secrets that contain '/', which urlsplit would cut apart.
    if "@" in authority or (":" in authority and not _is_host_port(scheme_l, authority)):
        raise InvalidArgument(_NO_CREDENTIALS)
    parts = urlsplit(uri)
    if parts.query or parts.fragment or "?" in uri or "#" in uri:
        raise InvalidArgument(
            f"storage URIs take no query string or fragment ({scheme_l}://{parts.hostname or ''}/...): "
            "credentials such as SAS tokens go in the environment, e.g. AZURE_STORAGE_SAS_TOKEN"
        )

    if scheme_l in ("https", "http"):
        return _parse_azure_https(parts.hostname or "", parts.path)
    scheme = _SCHEME_ALIASES.get(scheme_l)
    if scheme is None:
        raise InvalidArgument(
            f"unsupported storage URI scheme {scheme_l!r}: use a local path, file://, s3://, gs://, "
            "az:// or https://ACCOUNT.blob.core.windows.net/CONTAINER"
        )
    bucket = authority
    what = "container" if scheme == "az" else "bucket"
    if not bucket:
        raise InvalidArgument(f"storage URI {scheme}:// names no {what}")
    if not _BUCKET_RE.match(bucket):
        raise InvalidArgument(f"storage URI {scheme}://{bucket} has an invalid {what} name {bucket!r}")
    return StorageURI(scheme, bucket=bucket, prefix=_clean_key_prefix(rest[2 + len(authority) :]))


def _is_host_port(scheme: str, authority: str) -> bool:
    host, _, port = authority.rpartition(":")
    return scheme in ("https", "http") and port.isdigit() and bool(host)


def _parse_file(uri: str) -> StorageURI:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        if "@" in parts.netloc:
            raise InvalidArgument(_NO_CREDENTIALS)
        raise InvalidArgument(f"file:// URIs must name a local path, not host {parts.hostname!r}")
    if parts.query or parts.fragment:
        raise InvalidArgument("file:// URIs take no query string or fragment")
    path = unquote(parts.path)
    if not path:
        raise InvalidArgument("file:// URI names no path")
    return StorageURI("file", prefix=path)


def _parse_azure_https(host: str, path: str) -> StorageURI:
    m = _AZURE_HOST_RE.match(host.lower())
    if not m:
        raise InvalidArgument(
            f"unsupported https storage URI host {host!r}: only Azure Blob Storage "
            "(https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX) is recognised; "
            "use s3:// with endpoint_url for S3-compatible stores"
        )
    container, _, prefix = unquote(path).lstrip("/").partition("/")
    if not container:
        raise InvalidArgument(f"storage URI https://{host}/ names no container")
    if not _BUCKET_RE.match(container):
        raise InvalidArgument(f"storage URI https://{host} has an invalid container name {container!r}")
    return StorageURI("az", bucket=container, prefix=_clean_key_prefix(prefix), account=m.group(1))


def redact_uri(uri: str) -> str:
    """A best-effort credential-free rendering of any URI-ish string, for messages and logs."""
    try:
        return str(parse_storage_uri(uri))
    except InvalidArgument:
        pass
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", uri)
    if not m:
        return "<storage URI>"
    rest = uri[m.end() :]
    # Drop everything up to the last '@' before the path (userinfo, even with '/' inside it),
    # and any query string or fragment.
    rest = re.split(r"[?#]", rest, maxsplit=1)[0]
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return f"{m.group(1).lower()}://{rest}"
