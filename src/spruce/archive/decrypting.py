"""Checking stored bytes against the manifest, and decrypting a whole encrypted file at once.

Parquet needs random access, so an encrypted Parquet part is decrypted whole before any record
of it comes out: segment by segment straight into one buffer (``decrypt_into``, no copies),
while a second thread hashes the stored bytes (hashlib and AES-GCM both release the GIL, so the
two overlap). A part too large to hold in memory, or of unknown size, is decrypted into a
temporary file instead. Either way the checksum is compared first (ChecksumMismatch, naming the
cause), then the last segment's authentication (DecryptionFailed).
"""

from __future__ import annotations

import hashlib
import queue
import tempfile
import threading
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from spruce.archive.crypto import HEADER_BYTES, TAG_BYTES, SegmentAuthError, plaintext_size
from spruce.archive.streams import READ_CHUNK
from spruce.errors import ChecksumMismatch, DecryptionFailed

if TYPE_CHECKING:
    from spruce.archive.reader import SourceFile

#: encrypted Parquet parts up to this plaintext size are decrypted in memory, larger ones to a file
MAX_IN_MEMORY = 512 << 20


def check_bytes(f: SourceFile, sha: str | None, size: int, *, cause: str | None = None) -> None:
    why = f" ({cause})" if cause else ""
    if f.bytes is not None and size != f.bytes:
        raise ChecksumMismatch(f"{f.path}: {size} bytes, the manifest says {f.bytes}{why}")
    if f.sha256 is not None and sha != f.sha256:
        raise ChecksumMismatch(f"{f.path}: sha256 is {sha}, the manifest says {f.sha256}{why}")


def stored_size(raw: Any) -> int | None:
    """The object's size when the reader knows it up front (a local file, an object's length)."""
    size = getattr(raw, "size", None)
    if isinstance(size, int):
        return size
    try:
        import os

        return os.fstat(raw.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        return None


def check_stored_size(f: SourceFile, raw: Any) -> int | None:
    """A stored size that differs from the manifest (a file cut short, or grown) fails before
    anything of the file is decrypted. Returns the size when known."""
    size = stored_size(raw)
    if f.bytes is not None and size is not None and size != f.bytes:
        raw.close()
        raise ChecksumMismatch(f"{f.path}: {size} bytes, the manifest says {f.bytes} (nothing of it was read)")
    return size


def auth_failed(f: SourceFile, why: str) -> DecryptionFailed:
    return DecryptionFailed(f"{f.path}: cannot be decrypted: {why}")


class _Counter:
    """Only the size: for a part whose bytes the caller already checked (see _decrypt_into)."""

    def __init__(self) -> None:
        self.size = 0

    def put(self, data: bytes) -> None:
        self.size += len(data)

    def result(self) -> tuple[str | None, int]:
        return None, self.size


class _Hasher:
    """sha256 and size of the chunks ``put`` to it, computed in a thread of its own."""

    def __init__(self) -> None:
        self._q: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._sha = hashlib.sha256()
        self.size = 0
        self._thread = threading.Thread(target=self._run, name="spruce-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._q.get()) is not None:
            self._sha.update(data)
            self.size += len(data)

    def put(self, data: bytes) -> None:
        if data:
            self._q.put(data)

    def result(self) -> tuple[str, int]:
        self._q.put(None)
        self._thread.join()
        return self._sha.hexdigest(), self.size


def _read_exact(raw: Any, n: int) -> bytes:
    data = raw.read(n)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n and (more := raw.read(n - got)):
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def decrypt_whole(raw: Any, f: SourceFile) -> tuple[Any, Any]:
    """The verified plaintext of the encrypted file ``raw`` (opened, closed here) as (a pyarrow
    source, a temporary file to close afterwards or None)."""
    assert f.cipher is not None
    size = check_stored_size(f, raw)
    size = size if size is not None else f.bytes
    segment = f.cipher.segment_size
    try:
        segments, plain = (0, 0) if size is None else plaintext_size(size, segment)
    except SegmentAuthError as exc:
        hasher = _Hasher()
        with raw:
            while data := raw.read(READ_CHUNK):
                hasher.put(data)
        check_bytes(f, *hasher.result(), cause=str(exc))
        raise auth_failed(f, str(exc)) from None
    if size is None or plain > MAX_IN_MEMORY:
        return _decrypt_to_file(raw, f)
    out = bytearray(plain)
    failed = _decrypt_into(raw, f, size, segments, memoryview(out))
    if failed is not None:
        raise auth_failed(f, failed)
    return pa.BufferReader(pa.py_buffer(out)), None


def _decrypt_into(raw: Any, f: SourceFile, size: int, segments: int, out: memoryview) -> str | None:
    """Decrypt into ``out`` while hashing; raises ChecksumMismatch, or returns why the bytes (which
    match the manifest) do not authenticate, or None."""
    assert f.cipher is not None
    dec = f.cipher.decryptor(f.path)
    sealed = f.cipher.segment_size + TAG_BYTES
    per_read = max(1, READ_CHUNK // sealed)
    # sha256 None: the caller checked these bytes against the manifest just before (a restore's
    # preflight), and every segment's tag authenticates them again as they are decrypted, so a
    # second hash would only take a core from the decoding
    hasher: _Hasher | _Counter = _Hasher() if f.sha256 is not None else _Counter()
    failed: str | None = None
    try:
        header = _read_exact(raw, HEADER_BYTES)
        hasher.put(header)
        if len(header) < HEADER_BYTES:
            failed = "the file ends inside its header: truncated"
        else:
            try:
                dec.start(header)
            except SegmentAuthError as exc:
                failed = str(exc)
        i = pos = 0
        while failed is None and i < segments:
            k = min(per_read, segments - i)
            want = k * sealed if i + k < segments else size - HEADER_BYTES - i * sealed
            data = _read_exact(raw, want)
            hasher.put(data)
            if len(data) < want:
                failed = f"the file ends inside segment {i + len(data) // sealed}: truncated"
                break
            mv = memoryview(data)
            for j in range(k):
                seg = mv[j * sealed:(j + 1) * sealed]
                n = len(seg) - TAG_BYTES
                try:
                    dec.open_into(seg, out[pos:pos + n], last=i + j == segments - 1)
                except SegmentAuthError as exc:
                    failed = str(exc)
                    break
                pos += n
            i += k
        while data := raw.read(READ_CHUNK):  # the rest after a failure, or bytes beyond the size
            hasher.put(data)
    finally:
        raw.close()
        sha, n = hasher.result()
    check_bytes(f, sha, n, cause=failed)
    return failed


def _decrypt_to_file(raw: Any, f: SourceFile) -> tuple[str, Any]:
    """The streaming fallback: a temporary file holding the plaintext (Parquet needs random access)."""
    assert f.cipher is not None
    dec = f.cipher.decryptor(f.path)
    tmp = tempfile.NamedTemporaryFile(prefix="spruce-", suffix=".parquet")  # noqa: SIM115
    try:
        h = hashlib.sha256()
        size = 0
        failed: str | None = None
        with raw:
            while data := raw.read(READ_CHUNK):
                h.update(data)
                size += len(data)
                if failed is None:
                    try:
                        for chunk in dec.feed(data):
                            tmp.write(chunk)
                    except SegmentAuthError as exc:
                        failed = str(exc)
        if failed is None:
            try:
                tmp.write(dec.finish())
            except SegmentAuthError as exc:
                failed = str(exc)
        check_bytes(f, h.hexdigest(), size, cause=failed)
        if failed is not None:
            raise auth_failed(f, failed)
        tmp.flush()
    except BaseException:
        tmp.close()
        raise
    return tmp.name, tmp
