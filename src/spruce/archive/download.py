"""Download an archive into a local folder, from its storage URI or from signed links, and verify it.

Two kinds of source:

* a storage URI (``s3://``, ``gs://``, ``az://``, a folder): read with the credentials of the
  environment (or ``storage_options``), through the same ``Store`` the exporter wrote with;
* a manifest link over plain HTTP(S) — typically the ``download_url`` of a completed export,
  pre-signed, so it needs no credentials at all — plus one link per data file (the export's
  ``download_urls``: archive path -> URL). Unsigned links (a public bucket, a static web
  server) need only the manifest link: the files' links are derived from it.

Guarantees, whichever the source:

* Every file the manifest lists is streamed to disk, its sha256 and size computed as the bytes
  arrive and compared with the manifest before the file is allowed to land. Each file lands
  atomically (temporary file, fsync, rename); a file that does not match is discarded.
* ``manifest.json`` is written last, and only when every file matched; any manifest already in
  the folder is removed first. A folder holding a manifest is therefore always a whole copy.
* Finally the folder is verified as ``spruce verify`` does (``verify_archive``: every record
  decoded and checked), so a download that returns has been verified end to end.
* Failures raise one-line errors naming the file (``ChecksumMismatch``, ``MissingFile``,
  ``StorageError`` for an expired, altered or refused link). Link query strings (signatures)
  never appear in messages or in httpx's log lines.
* Re-running into the same folder resumes: files already present with the manifest's size and
  sha256 are kept, not fetched again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx

from spruce.archive.manifest import MANIFEST_NAME, FileEntry, Manifest, parse_manifest
from spruce.archive.naming import PART_PATH_RE
from spruce.archive.verify import VerifyReport, verify_archive
from spruce.errors import (
    AlreadyExists,
    ArchiveIncomplete,
    ChecksumMismatch,
    IntegrityError,
    InvalidArgument,
    ManifestInvalid,
    MissingFile,
    StorageError,
)
from spruce.storage import LocalStore, Store, open_store

__all__ = ["DownloadReport", "download_archive", "is_link", "load_links", "safe_url"]

CHUNK = 1 << 20
ProgressCallback = Callable[[int], None]

_AZURE_HOST_RE = re.compile(r"^[a-z0-9]{3,24}\.blob\.core\.windows\.net$", re.IGNORECASE)
_XML_CODE = re.compile(r"<Code>\s*([^<]+?)\s*</Code>")
_XML_MESSAGE = re.compile(r"<Message>\s*([^<]+?)\s*</Message>", re.DOTALL)
_QUERY_IN_TEXT = re.compile(r"(https?://[^\s?\"'<>]+)\?[^\s\"'<>]*")


@dataclass
class DownloadReport:
    """What a successful download did. ``verify`` is the final check of the local folder."""

    dest: str
    source: str  # credential-free: a storage URI, or a link without its query string
    manifest: Manifest
    files_fetched: int = 0
    files_reused: int = 0
    bytes_fetched: int = 0
    removed: list[str] = field(default_factory=list)  # stale part files removed from dest
    verify: VerifyReport | None = None

    @property
    def files(self) -> int:
        return self.files_fetched + self.files_reused

    @property
    def records(self) -> int:
        return int(self.manifest.totals["records"])

    @property
    def bytes(self) -> int:
        return int(self.manifest.totals["bytes"])


# -- links -------------------------------------------------------------------------------------


def safe_url(url: str) -> str:
    """A link without its query string and fragment (where signatures and SAS tokens live)."""
    try:
        p = urlsplit(url)
    except ValueError:
        return "<link>"
    host = p.hostname or ""
    if p.port:
        host = f"{host}:{p.port}"
    return urlunsplit((p.scheme, host, p.path, "", ""))


def _scrub(text: str) -> str:
    return _QUERY_IN_TEXT.sub(r"\1?…", text)


def is_link(src: str) -> bool:
    """True when ``src`` is an HTTP(S) link rather than a storage URI.

    ``https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX`` without a query string is an
    Azure storage URI; with one (a SAS) it is a link, as is any other http(s) URL.
    """
    try:
        p = urlsplit(src)
    except ValueError:
        return False
    if p.scheme.lower() not in ("http", "https"):
        return False
    if p.query:
        return True
    return not _AZURE_HOST_RE.match(p.hostname or "")


def load_links(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a links file: a JSON object mapping archive path -> URL (an export's ``download_urls``).

    The whole export status is accepted too (a job file in ``<data>/jobs/``, or the public
    status): its ``download_urls`` / ``downloadUrls`` are used.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text("utf-8"))
    except FileNotFoundError:
        raise InvalidArgument(f"links file {p} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InvalidArgument(f"links file {p} is not readable JSON: {_scrub(str(e))}") from None
    if isinstance(doc, dict):
        for key in ("download_urls", "downloadUrls"):
            if key in doc:
                doc = doc[key]
                break
    if not isinstance(doc, dict) or not doc:
        raise InvalidArgument(f"links file {p} must be a JSON object mapping archive paths to URLs "
                              "(an export's download_urls)")
    links: dict[str, str] = {}
    for k, v in doc.items():
        if not isinstance(v, str) or urlsplit(v).scheme.lower() not in ("http", "https"):
            raise InvalidArgument(f"links file {p}: the link for {k!r} is not an http(s) URL")
        links[str(k)] = v
    return links


def _link_expiry(url: str) -> datetime | None:
    """When a pre-signed link stops working, read from its own query (S3 and Azure), if it says."""
    try:
        q = parse_qs(urlsplit(url).query)
        if "X-Amz-Date" in q and "X-Amz-Expires" in q:
            start = datetime.strptime(q["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            return start + timedelta(seconds=int(q["X-Amz-Expires"][0]))
        if "se" in q:
            return datetime.fromisoformat(q["se"][0].replace("Z", "+00:00"))
    except (ValueError, IndexError):
        return None
    return None


class _RedactQueries(logging.Filter):
    """httpx logs every request's full URL at INFO; a signed URL is a credential for its object."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:
            return True
        if "?" in msg:
            record.msg, record.args = _scrub(msg), None
        return True


_FILTER = _RedactQueries()
_FILTER_LOCK = threading.Lock()


def _install_log_filter() -> None:
    with _FILTER_LOCK:
        for name in ("httpx", "httpcore"):
            logger = logging.getLogger(name)
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)


# -- sources -------------------------------------------------------------------------------------


class _Transient(Exception):
    """A failure worth another attempt (connection dropped, HTTP 5xx or 429)."""


class _Cancelled(Exception):
    """Another file failed; this one stops."""


class _StoreSource:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.description = store.uri

    def where(self, path: str) -> str:
        return f"{self.store.uri.rstrip('/')}/{path}"

    def manifest_bytes(self) -> bytes:
        try:
            return self.store.get_bytes(MANIFEST_NAME)
        except FileNotFoundError:
            raise ArchiveIncomplete(
                f"{self.where(MANIFEST_NAME)}: no manifest: there is no complete archive here (the export "
                "never committed, is still running, or the URI is wrong)") from None

    def chunks(self, path: str) -> Iterator[bytes]:
        try:
            f = self.store.open_reader(path)
        except FileNotFoundError:
            raise MissingFile(f"{path}: listed in the manifest but absent from {self.store.uri}") from None
        with f:
            while data := f.read(CHUNK):
                yield data


class _HttpSource:
    def __init__(self, manifest_url: str, links: Mapping[str, str], client: httpx.Client) -> None:
        self.manifest_url = manifest_url
        self.links = dict(links)
        self.client = client
        self.description = safe_url(manifest_url)
        parts = urlsplit(manifest_url)
        # Unsigned links (public buckets, plain web servers): a file's link is derived from the
        # manifest's. A signed manifest link cannot lend its signature to other paths.
        self.base = None if parts.query else manifest_url[: manifest_url.rfind("/") + 1]

    def where(self, path: str) -> str:
        url = self.manifest_url if path == MANIFEST_NAME else self.links.get(path)
        if url is None and self.base is not None:
            url = self.base + path
        return safe_url(url) if url else path

    def url(self, path: str) -> str:
        if path == MANIFEST_NAME:
            return self.manifest_url
        url = self.links.get(path)
        if url is None:
            if self.base is None:
                raise InvalidArgument(
                    f"{path}: no link for this file: pass the export's download_urls with --links FILE "
                    f"(or --link {path}=URL); a signed manifest link cannot be reused for other files")
            url = self.base + path
        return url

    def manifest_bytes(self) -> bytes:
        return b"".join(self.chunks(MANIFEST_NAME))

    def chunks(self, path: str) -> Iterator[bytes]:
        url = self.url(path)
        host = urlsplit(url).netloc.rsplit("@", 1)[-1]
        try:
            with self.client.stream("GET", url) as r:
                if r.status_code != 200:
                    body = r.read()[:8192]
                    raise _http_error(path, url, host, r.status_code, r.reason_phrase, body)
                # iter_raw: the stored bytes exactly, never undone by a Content-Encoding header
                yield from r.iter_raw(CHUNK)
        except httpx.TransportError as e:
            detail = _scrub(str(e)) or type(e).__name__
            raise _Transient(f"{path}: download from {host} failed: {type(e).__name__}: {detail}") from None


def _http_error(path: str, url: str, host: str, status: int, reason: str, body: bytes) -> Exception:
    text = body.decode("utf-8", "replace")
    code_m, msg_m = _XML_CODE.search(text), _XML_MESSAGE.search(text)
    code = code_m.group(1) if code_m else None
    server_msg = " ".join(msg_m.group(1).split())[:160] if msg_m else None
    detail = ": ".join(b for b in (code, server_msg) if b)
    head = f"{path}: download failed: HTTP {status}{' ' + reason if reason else ''}"
    head += f" ({_scrub(detail)})" if detail else ""
    head += f" from {host}"
    if status == 429 or status >= 500:
        return _Transient(head)
    low = f"{code or ''} {server_msg or ''}".lower()
    expires = _link_expiry(url)
    expired_at = expires.strftime("%Y-%m-%dT%H:%M:%SZ") if expires else None
    now = datetime.now(UTC)
    if status in (401, 403):
        if "expired" in low or "not valid in the specified time" in low or (expires and expires <= now):
            why = f"the link has expired{f' (at {expired_at})' if expired_at else ''}"
        elif "signature" in low or code in ("AuthenticationFailed", "AuthorizationFailure"):
            why = "the link's signature does not match: the link was altered or belongs to another file"
        else:
            why = "access denied: the link has expired, was altered or was revoked"
        return StorageError(f"{head}: {why}; get fresh links from a new export, or download by storage "
                            "URI with credentials")
    if status == 404:
        return MissingFile(f"{head}: nothing at this link (the object was removed or the link names "
                           "another path)")
    return StorageError(head)


# -- the download ----------------------------------------------------------------------------------


def download_archive(
    src: str,
    dest: str | os.PathLike[str],
    *,
    links: Mapping[str, str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    parallel: int = 4,
    timeout: float = 60.0,
    retries: int = 3,
    on_manifest: Callable[[Manifest], None] | None = None,
    on_progress: ProgressCallback | None = None,
    client: httpx.Client | None = None,
) -> DownloadReport:
    """Copy the archive at ``src`` into the folder ``dest`` and verify it (see the module docstring).

    ``src`` is a storage URI or folder, or a manifest link (``links`` then maps archive paths to
    their links). ``overwrite`` allows replacing a different archive already in ``dest``.
    ``on_manifest`` is called once the manifest is read, ``on_progress(bytes)`` as data arrives
    (from worker threads). Raises IntegrityError, StorageError or InvalidArgument; never returns
    an unverified download.
    """
    if parallel < 1:
        raise InvalidArgument("parallel must be at least 1")
    if retries < 0:
        raise InvalidArgument("retries must be >= 0")
    dest_path = Path(dest).expanduser()
    if dest_path.exists() and not dest_path.is_dir():
        raise InvalidArgument(f"{dest_path} exists and is not a folder")
    own_client = None
    if is_link(src):
        _install_log_filter()
        if client is None:
            client = own_client = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                                               follow_redirects=True, headers={"User-Agent": "spruce"})
        manifest_url = src
        p = urlsplit(src)
        if not p.query and not p.path.endswith("/" + MANIFEST_NAME):
            manifest_url = src.rstrip("/") + "/" + MANIFEST_NAME
        source: _StoreSource | _HttpSource = _HttpSource(manifest_url, links or {}, client)
    else:
        if links:
            raise InvalidArgument("links are for a signed manifest link; SRC is a storage URI, which is read "
                                  "with credentials")
        store = open_store(src, **dict(storage_options or {}))
        local = store.local_path("")
        if local is not None and Path(local).resolve() == dest_path.resolve():
            raise InvalidArgument(f"{dest_path} is the source archive itself; download into another folder")
        source = _StoreSource(store)
    try:
        return _download(source, dest_path, overwrite=overwrite, parallel=parallel, retries=retries,
                         on_manifest=on_manifest, on_progress=on_progress)
    finally:
        if own_client is not None:
            own_client.close()


def _with_retries(fn: Callable[[], Any], retries: int) -> Any:
    delay = 0.2
    for attempt in range(retries + 1):
        try:
            return fn()
        except _Transient as e:
            if attempt == retries:
                raise StorageError(f"{e}{f' (after {retries} retries)' if retries else ''}") from None
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


def _download(source: _StoreSource | _HttpSource, dest: Path, *, overwrite: bool, parallel: int, retries: int,
              on_manifest: Callable[[Manifest], None] | None,
              on_progress: ProgressCallback | None) -> DownloadReport:
    raw = _with_retries(source.manifest_bytes, retries)
    try:
        manifest = parse_manifest(raw, where=MANIFEST_NAME)
    except ManifestInvalid as e:
        raise ManifestInvalid(f"{e} (read from {source.where(MANIFEST_NAME)})") from None
    if on_manifest is not None:
        on_manifest(manifest)

    dest.mkdir(parents=True, exist_ok=True)
    local = LocalStore(dest)
    old = dest / MANIFEST_NAME
    if old.is_file():
        try:
            old_id: str | None = parse_manifest(old.read_bytes()).export_id
        except IntegrityError:
            old_id = None
        if old_id != manifest.export_id and not overwrite:
            held = f"archive {old_id}" if old_id else "a manifest.json"
            raise AlreadyExists(f"{dest} already holds {held}, not {manifest.export_id}; download into a new "
                                "folder or pass --overwrite")
    # From here until the end the folder holds no manifest: never a mix taken for an archive.
    local.delete(MANIFEST_NAME)

    report = DownloadReport(dest=str(dest), source=source.description, manifest=manifest)
    lock = threading.Lock()
    stop = threading.Event()

    def progress(n: int) -> None:
        if on_progress is not None and n:
            with lock:
                on_progress(n)

    def fetch(entry: FileEntry) -> None:
        if _already_there(local, entry):
            with lock:
                report.files_reused += 1
            progress(entry.bytes)
            return
        got = _with_retries(lambda: _fetch_file(source, local, entry, stop, progress), retries)
        with lock:
            report.files_fetched += 1
            report.bytes_fetched += got

    files = manifest.files
    if isinstance(source, _HttpSource):
        for f in files:
            source.url(f.path)  # every file has a link, before anything is fetched
    if files:
        with ThreadPoolExecutor(max_workers=min(parallel, len(files)), thread_name_prefix="spruce-download") as ex:
            futures = [ex.submit(fetch, f) for f in files]
            wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in futures if f.done() and f.exception() is not None), None)
            if failed is not None:
                stop.set()
                for f in futures:
                    f.cancel()
                wait(futures)
                exc = failed.exception()
                assert exc is not None
                raise exc

    listed = {f.path for f in files}
    for info in list(local.list("")):
        if info.path not in listed and PART_PATH_RE.fullmatch(info.path):
            local.delete(info.path)
            report.removed.append(info.path)
    local.put_bytes(MANIFEST_NAME, raw)  # last: the folder is an archive from this moment on

    report.verify = verify_archive(local)
    report.verify.raise_for_problems()
    return report


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(CHUNK):
            h.update(data)
    return h.hexdigest()


def _already_there(local: LocalStore, entry: FileEntry) -> bool:
    p = Path(local.local_path(entry.path) or "")
    try:
        return p.is_file() and p.stat().st_size == entry.bytes and _sha256_file(p) == entry.sha256
    except OSError:
        return False


def _fetch_file(source: _StoreSource | _HttpSource, local: LocalStore, entry: FileEntry,
                stop: threading.Event, progress: ProgressCallback) -> int:
    """Stream one file into place, hashing as it goes; it lands only if it matches the manifest."""
    writer = local.open_writer(entry.path)
    h = hashlib.sha256()
    size = 0
    chunks = source.chunks(entry.path)
    try:
        for data in chunks:
            if stop.is_set():
                raise _Cancelled()
            h.update(data)
            size += len(data)
            writer.write(data)
            progress(len(data))
            if size > entry.bytes:
                break  # longer than the manifest says: no need to read the rest
        sha = h.hexdigest()
        if size != entry.bytes or sha != entry.sha256:
            got = f"more than {entry.bytes} bytes" if size > entry.bytes else f"{size} bytes, sha256 {sha}"
            raise ChecksumMismatch(
                f"{entry.path}: the downloaded file does not match the manifest: got {got}, the manifest says "
                f"{entry.bytes} bytes, sha256 {entry.sha256} (from {source.where(entry.path)}); not kept")
    except BaseException as e:
        writer.abort()
        progress(-size)
        if isinstance(e, _Cancelled):
            return 0
        raise
    finally:
        chunks.close()  # ends the HTTP response or closes the object reader at once
    writer.close()
    return size
