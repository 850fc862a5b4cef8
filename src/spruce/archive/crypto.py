"""Streaming authenticated encryption of one file: AES-256-GCM in segments (docs/FORMAT.md, "Encryption").

The construction is Tink's AES-GCM-HKDF streaming AEAD, as age's STREAM uses it too:

* a header ``MAGIC || segment size (4 bytes BE) || salt (32 random bytes) || nonce prefix (7 random bytes)``;
* a file key ``HKDF-SHA256(ikm=archive key, salt=salt, info=INFO || archive nonce || path)``: a fresh key
  for every file, bound to its archive and to its path inside it;
* the plaintext cut into segments of ``segment size`` bytes (the last one shorter, or empty when the
  whole plaintext is), each sealed with AES-256-GCM under the nonce
  ``nonce prefix || segment number (4 bytes BE) || last flag (1 byte: 1 for the last segment, else 0)``
  and the whole header as associated data; a sealed segment is its ciphertext followed by the 16-byte tag.

A segment's plaintext is released only once its tag verified. Truncation (anywhere, segment
boundaries included: the new last segment was sealed with flag 0), reordering (a segment under
another number), splicing (a segment of another file: another key) and an edited header all fail
authentication.
"""

from __future__ import annotations

import os
import struct
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"SPRUCEE\x01"  # "SPRUCE" "E"ncrypted, layout version 1
SALT_BYTES = 32
PREFIX_BYTES = 7
TAG_BYTES = 16
HEADER_BYTES = len(MAGIC) + 4 + SALT_BYTES + PREFIX_BYTES  # 51
DEFAULT_SEGMENT_SIZE = 1 << 20
MIN_SEGMENT_SIZE = 64
MAX_SEGMENT_SIZE = 1 << 26
MAX_SEGMENTS = 1 << 32
FILE_KEY_INFO = b"spruce-archive v1 file key\x00"
_LAST = b"\x01"
_MORE = b"\x00"


class SegmentAuthError(Exception):
    """A header or segment that does not authenticate; the message says which and how."""


class _Sink(Protocol):
    def write(self, data: bytes | bytearray | memoryview) -> int: ...


def file_key(master: bytes, archive_nonce: bytes, path: str, salt: bytes) -> bytes:
    """The key of the file at ``path`` (relative to the archive's root) with header salt ``salt``."""
    info = FILE_KEY_INFO + archive_nonce + path.encode("utf-8", "surrogatepass")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(master)


def check_segment_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SEGMENT_SIZE <= size <= MAX_SEGMENT_SIZE:
        raise ValueError(f"the segment size must be an integer from {MIN_SEGMENT_SIZE} to {MAX_SEGMENT_SIZE}, "
                         f"got {size!r}")
    return size


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter >= MAX_SEGMENTS:
        raise SegmentAuthError(f"more than {MAX_SEGMENTS} segments: the file is too large for its segment size")
    return prefix + counter.to_bytes(4, "big") + (_LAST if last else _MORE)


class SegmentEncryptor:
    """A write-only file object: plaintext in, header and sealed segments out to ``out``.

    ``close()`` seals the last segment (it must be called, or the file has no end)."""

    def __init__(self, master: bytes, archive_nonce: bytes, path: str, out: _Sink, *,
                 segment_size: int = DEFAULT_SEGMENT_SIZE) -> None:
        self.segment_size = check_segment_size(segment_size)
        salt = os.urandom(SALT_BYTES)
        self._prefix = os.urandom(PREFIX_BYTES)
        self._header = MAGIC + struct.pack(">I", segment_size) + salt + self._prefix
        self._aead = AESGCM(file_key(master, archive_nonce, path, salt))
        self._out = out
        self._buf = bytearray()
        self._counter = 0
        self._started = False
        self.closed = False

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._out.write(self._header)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        if not n:
            return 0
        self._start()
        buf = self._buf
        buf += data
        size = self.segment_size
        pos = 0
        # a full segment is sealed as "not last" only once a byte after it is known to exist
        if len(buf) > size:
            with memoryview(buf) as mv:
                while len(buf) - pos > size:
                    self._seal(mv[pos:pos + size], last=False)
                    pos += size
            del buf[:pos]
        return n

    def _seal(self, plaintext: Any, *, last: bool) -> None:
        nonce = _nonce(self._prefix, self._counter, last)
        self._out.write(self._aead.encrypt(nonce, plaintext, self._header))
        self._counter += 1

    def close(self) -> None:
        if self.closed:
            return
        self._start()
        self._seal(bytes(self._buf), last=True)
        self._buf = bytearray()
        self.closed = True


def plaintext_size(stored: int, segment_size: int) -> tuple[int, int]:
    """(segments, plaintext bytes) of a stored file of ``stored`` bytes; SegmentAuthError when no
    well-formed file has that size (cut inside its header, or inside a tag)."""
    body = stored - HEADER_BYTES
    if body < TAG_BYTES:
        raise SegmentAuthError(f"{stored} bytes is too short for a header and a segment: the file was cut short")
    sealed = segment_size + TAG_BYTES
    segments = -(-body // sealed)
    if body - (segments - 1) * sealed < TAG_BYTES:
        raise SegmentAuthError(f"the last segment is shorter than its tag ({stored} bytes stored): the file was cut "
                               "short or grew")
    return segments, body - segments * TAG_BYTES


class SegmentDecryptor:
    """Stored bytes in (``feed``, then ``finish``), verified plaintext out, segment by segment.

    ``feed`` returns the plaintext of every segment that is complete and known not to be the
    last one; ``finish`` returns the last segment's. Anything that does not authenticate raises
    SegmentAuthError before any of its plaintext is returned."""

    def __init__(self, master: bytes, archive_nonce: bytes, path: str, *,
                 segment_size: int = DEFAULT_SEGMENT_SIZE) -> None:
        self.segment_size = check_segment_size(segment_size)
        self._master, self._nonce_bytes, self._path = master, archive_nonce, path
        self._buf = bytearray()
        self._header: bytes | None = None
        self._aead: AESGCM | None = None
        self._prefix = b""
        self._counter = 0
        self.segments = 0  # segments verified so far

    def _read_header(self) -> bool:
        if len(self._buf) < HEADER_BYTES:
            return False
        self.start(bytes(self._buf[:HEADER_BYTES]))
        del self._buf[:HEADER_BYTES]
        return True

    def start(self, header: bytes) -> None:
        """Take the file's header (HEADER_BYTES): check it, derive the file key."""
        if header[:len(MAGIC)] != MAGIC:
            raise SegmentAuthError("not an encrypted spruce file (its header does not start with the "
                                   f"magic bytes {MAGIC.hex()})")
        (size,) = struct.unpack(">I", header[len(MAGIC):len(MAGIC) + 4])
        if size != self.segment_size:
            raise SegmentAuthError(f"its header says segments of {size} bytes, the manifest {self.segment_size}")
        salt = header[len(MAGIC) + 4:len(MAGIC) + 4 + SALT_BYTES]
        self._prefix = header[-PREFIX_BYTES:]
        self._aead = AESGCM(file_key(self._master, self._nonce_bytes, self._path, salt))
        self._header = header

    def open_into(self, sealed: Any, out: Any, *, last: bool) -> None:
        """Open the next segment (``sealed``: its ciphertext and tag) into ``out`` (a writable buffer
        of exactly its plaintext's size), after ``start``. SegmentAuthError, ``out`` then garbage."""
        assert self._aead is not None and self._header is not None
        try:
            self._aead.decrypt_into(_nonce(self._prefix, self._counter, last), sealed, self._header, out)
        except InvalidTag:
            raise SegmentAuthError(self._why(last)) from None
        self._counter += 1
        self.segments += 1

    def _why(self, last: bool) -> str:
        if last:
            return (f"segment {self._counter} (the last one stored) fails authentication: the file was cut "
                    "short, or changed, or belongs to another archive or path")
        return (f"segment {self._counter} fails authentication: the file was changed (or its segments "
                "reordered), or belongs to another archive or path")

    def _open(self, sealed: Any, *, last: bool) -> bytes:
        assert self._aead is not None and self._header is not None
        try:
            out = self._aead.decrypt(_nonce(self._prefix, self._counter, last), sealed, self._header)
        except InvalidTag:
            raise SegmentAuthError(self._why(last)) from None
        self._counter += 1
        self.segments += 1
        return out

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        self._buf += data
        if self._header is None and not self._read_header():
            return []
        buf = self._buf
        sealed = self.segment_size + TAG_BYTES
        out: list[bytes] = []
        pos = 0
        if len(buf) > sealed:
            with memoryview(buf) as mv:
                while len(buf) - pos > sealed:
                    out.append(self._open(mv[pos:pos + sealed], last=False))
                    pos += sealed
            del buf[:pos]
        return out

    def finish(self) -> bytes:
        """The last segment's plaintext; SegmentAuthError when the file ends early or anything is off."""
        if self._header is None and not self._read_header():
            raise SegmentAuthError(f"the file ends inside its header ({len(self._buf)} of {HEADER_BYTES} bytes): "
                                   "truncated")
        if len(self._buf) < TAG_BYTES:
            raise SegmentAuthError(f"the file ends after segment {self._counter - 1} without a last segment: "
                                   "truncated" if self._counter else "the file holds no segment: truncated")
        out = self._open(bytes(self._buf), last=True)
        self._buf = bytearray()
        return out


def encrypt_bytes(master: bytes, archive_nonce: bytes, path: str, data: bytes, *,
                  segment_size: int = DEFAULT_SEGMENT_SIZE) -> bytes:
    """A whole file's stored bytes at once (small files: tombstones, tests)."""
    out = bytearray()

    class _Collect:
        def write(self, b: Any) -> int:
            out.extend(b)
            return len(b)

    enc = SegmentEncryptor(master, archive_nonce, path, _Collect(), segment_size=segment_size)
    enc.write(data)
    enc.close()
    return bytes(out)


def decrypt_bytes(master: bytes, archive_nonce: bytes, path: str, data: bytes, *,
                  segment_size: int = DEFAULT_SEGMENT_SIZE) -> bytes:
    """The plaintext of a whole stored file; SegmentAuthError unless every segment authenticates."""
    dec = SegmentDecryptor(master, archive_nonce, path, segment_size=segment_size)
    parts = dec.feed(data)
    parts.append(dec.finish())
    return b"".join(parts)
