"""Byte plumbing: hash-while-writing sinks and a read-ahead, hash-while-reading gunzip thread."""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

from isal import isal_zlib

from spruce.storage.base import Writer

READ_CHUNK = 1 << 22  # raw bytes read from the store at a time
MAX_OUT = 8 << 20  # cap on decompressed bytes per step (bounds memory on highly compressible input)
_GZIP_WBITS = 31
_GZIP_MAGIC = b"\x1f\x8b"


class _WriteOnlyFile:
    """What writers such as pyarrow ask of a file object besides write(): ``size`` bytes so far."""

    size: int

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True


class HashingSink(_WriteOnlyFile):
    """A write-only file object that hashes and counts what goes to a Store writer."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.sha = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        if n:
            self.sha.update(data)
            self.writer.write(data)
            self.size += n
        return n

    def close(self) -> None:  # the owner closes the Store writer explicitly
        self.closed = True


class WriteBehind(_WriteOnlyFile):
    """A file object whose writes a thread hashes and stores (through a HashingSink; encrypted
    archives: encrypts first), so the encoder that writes (gzip, pyarrow's Parquet writer) goes
    on encoding meanwhile.
    ``close()`` waits for the last write and raises the first error a write met."""

    def __init__(self, sink: HashingSink | Any, *, depth: int = 4) -> None:
        self.sink = sink  # a HashingSink, or a SegmentEncryptor in front of one
        self.size = 0  # bytes handed over so far
        self.closed = False
        self._q: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="spruce-archive-sink", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._q.get()) is not None:
            if self._error is None:
                try:
                    self.sink.write(data)
                except BaseException as e:
                    self._error = e

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._error is not None:
            raise self._error
        n = len(data)
        if n:
            self._q.put(bytes(data))
            self.size += n
        return n

    def close(self, *, quiet: bool = False) -> None:
        """Wait for the writes handed over; ``quiet`` when another error is already on its way."""
        if not self.closed:
            self.closed = True
            self._q.put(None)
            self._thread.join()
        if self._error is not None and not quiet:
            raise self._error


class DecodeFailure(Exception):
    """The byte stream could not be decompressed (corrupt or truncated gzip)."""


class AuthFailure(DecodeFailure):
    """An encrypted file's header or segment did not authenticate (spruce.archive.crypto)."""


class ReadPipeline:
    """Reads a stored object in a background thread: hash + count raw bytes, decrypt (encrypted
    archives: a segment's plaintext goes on only once its tag verified), gunzip, hand over chunks.

    Iterating yields decompressed chunks in order. ``sha256``/``size`` are final
    once iteration has ended (normally or with DecodeFailure), or after
    ``finish_hash()``, which stops decompressing and hashes the rest of the raw
    object (used to tell a checksum mismatch from a bad record).
    """

    _END = object()

    def __init__(self, raw: BinaryIO, *, gzip: bool, depth: int = 4, decryptor: Any = None) -> None:
        self._raw = raw
        self._gzip = gzip
        self._decryptor = decryptor
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()  # stop decompressing; keep hashing
        self._closed = threading.Event()  # consumer is gone; stop everything
        self._sha = hashlib.sha256()
        self.size = 0
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._d: Any = isal_zlib.decompressobj(_GZIP_WBITS) if gzip else None
        self._fed = False  # has the current gzip member seen any input?
        self._any_data = False
        self._thread = threading.Thread(target=self._run, name="spruce-archive-read", daemon=True)
        self._thread.start()

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set() and not self._closed.is_set():
            try:
                self._q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _hash(self, data: bytes) -> None:
        self._sha.update(data)
        self.size += len(data)

    def _drain_raw(self) -> None:
        while not self._closed.is_set():
            data = self._raw.read(READ_CHUNK)
            if not data:
                return
            self._hash(data)

    def _fail(self, error: BaseException) -> None:
        """Stop decoding for good; the rest of the object is still hashed."""
        self._error = error
        self._drain_raw()

    def _plain(self, data: bytes) -> bool:
        """Decompress (or pass on) plaintext bytes; False once decoding failed."""
        if not data:
            return True
        d = self._d
        if d is not None and not self._any_data and not data.startswith(_GZIP_MAGIC[: len(data)]):
            self._fail(DecodeFailure("not gzip data (it does not start with gzip's magic bytes 1f 8b)"))
            return False
        self._any_data = True
        if d is None:
            self._put(data)
            return True
        try:
            self._d, self._fed = self._gunzip(d, self._fed, data)
        except isal_zlib.error as e:
            self._fail(DecodeFailure(f"corrupt gzip data: {e}"))
            return False
        return True

    def _run(self) -> None:
        from spruce.archive.crypto import SegmentAuthError

        dec = self._decryptor
        try:
            while not self._closed.is_set():
                data = self._raw.read(READ_CHUNK)
                if not data:
                    break
                self._hash(data)
                if self._stop.is_set():
                    continue
                if dec is None:
                    if not self._plain(data):
                        return
                    continue
                try:
                    chunks = dec.feed(data)
                except SegmentAuthError as e:
                    self._fail(AuthFailure(str(e)))
                    return
                for chunk in chunks:
                    if not self._plain(chunk):
                        return
            if self._stop.is_set() or self._closed.is_set():
                return
            if dec is not None:
                try:
                    last = dec.finish()  # the last-segment flag: a file cut short fails here
                except SegmentAuthError as e:
                    self._error = AuthFailure(str(e))
                    return
                if not self._plain(last):
                    return
            if self._d is not None:
                if not self._any_data:
                    self._error = DecodeFailure("empty file: not gzip data")
                elif self._fed and not self._d.eof:
                    self._error = DecodeFailure("gzip data ends early (truncated file)")
        except BaseException as e:  # I/O errors from the store
            self._error = e
        finally:
            self._done.set()
            self._put(self._END)

    def _gunzip(self, d: Any, fed: bool, data: bytes) -> tuple[Any, bool]:
        """Feed ``data``; a new gzip member may follow the end of one (multi-member files)."""
        while data:
            out = d.decompress(data, MAX_OUT)
            fed = True
            if out:
                self._put(out)
            data = d.unconsumed_tail
            while not data and not d.eof:
                out = d.decompress(b"", MAX_OUT)
                if not out:
                    break
                self._put(out)
            if d.eof:
                data = d.unused_data
                d = isal_zlib.decompressobj(_GZIP_WBITS)
                fed = False
        return d, fed

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self._q.get()
            if item is self._END:
                self._thread.join()
                if self._error is not None:
                    raise self._error
                return
            yield item

    def finish_hash(self) -> tuple[str, int]:
        """Stop decompressing, hash the remaining raw bytes, return (sha256, size)."""
        self._stop.set()
        self._done.wait()
        self._thread.join()
        return self.sha256, self.size

    def close(self) -> None:
        self._closed.set()
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self._raw.close()
        except Exception:
            pass
