"""Namespace names <-> archive folder names, and the names of data parts.

A namespace name is any string of up to 512 characters; a folder name has to be
one path segment that is safe on S3, GCS, Azure and local filesystems. The
mapping (specified in docs/FORMAT.md, "Namespace folders") is:

* ``""`` (the default namespace) -> ``__default__``, as Pinecone's import expects.
* A name of 1 to 255 characters from ``[A-Za-z0-9_-]`` that does not start with
  ``__`` -> itself, so Pinecone's import (folder name == namespace) reads it.
* Anything else -> ``__ns-`` + lowercase RFC 4648 base32 (no padding) of the
  name's UTF-8 bytes, when that is at most 255 characters.
* Longer names -> ``__nsh-`` + the hex SHA-256 of the name's UTF-8 bytes. This
  form cannot be decoded; the manifest, which maps folder -> name, is needed.

Verbatim folders never start with ``__``; every encoded folder does and is not
``__default__``, so the mapping is collision-free. Every folder matches
``[A-Za-z0-9_-]{1,255}``, so it never contains ``/`` and is never ``.`` or ``..``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

DEFAULT_DIR = "__default__"
ENCODED_PREFIX = "__ns-"
HASHED_PREFIX = "__nsh-"
MAX_SEGMENT = 255

#: Every folder this module produces matches this.
DIR_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
_VERBATIM_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
_B32_RE = re.compile(r"[a-z2-7]*")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")

#: Data file extensions by format name.
EXTENSIONS: dict[str, str] = {"jsonl.gz": ".jsonl.gz", "jsonl": ".jsonl", "parquet": ".parquet"}
#: ``<dir>/part-NNNNN.<ext>``: the only data paths a manifest may list.
PART_PATH_RE = re.compile(r"([A-Za-z0-9_-]{1,255})/part-([0-9]{5,})\.(jsonl\.gz|jsonl|parquet)")


def _utf8(name: str) -> bytes:
    # surrogatepass keeps even lone surrogates reversible.
    return name.encode("utf-8", "surrogatepass")


def encode_namespace(name: str) -> str:
    """The folder for namespace ``name`` (see the module docstring)."""
    if not isinstance(name, str):
        raise TypeError(f"namespace must be a string, got {type(name).__name__}")
    if name == "":
        return DEFAULT_DIR
    if _VERBATIM_RE.fullmatch(name) and not name.startswith("__"):
        return name
    raw = _utf8(name)
    encoded = ENCODED_PREFIX + base64.b32encode(raw).decode("ascii").rstrip("=").lower()
    if len(encoded) <= MAX_SEGMENT:
        return encoded
    return HASHED_PREFIX + hashlib.sha256(raw).hexdigest()


def decode_dir(folder: str) -> str | None:
    """The namespace a folder stands for, or None when only a manifest can tell (hashed form).

    Raises ValueError for a folder this module would never produce.
    """
    if folder == DEFAULT_DIR:
        return ""
    if folder.startswith(HASHED_PREFIX):
        if _HEX64_RE.fullmatch(folder[len(HASHED_PREFIX):]):
            return None
        raise ValueError(f"malformed hashed namespace folder {folder!r}")
    if folder.startswith(ENCODED_PREFIX):
        body = folder[len(ENCODED_PREFIX):]
        if not _B32_RE.fullmatch(body):
            raise ValueError(f"malformed encoded namespace folder {folder!r}")
        try:
            raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
            name = raw.decode("utf-8", "surrogatepass")
        except (binascii.Error, ValueError):
            raise ValueError(f"malformed encoded namespace folder {folder!r}") from None
        if encode_namespace(name) != folder:  # not the canonical form
            raise ValueError(f"non-canonical encoded namespace folder {folder!r}")
        return name
    if _VERBATIM_RE.fullmatch(folder) and not folder.startswith("__"):
        return folder
    raise ValueError(f"{folder!r} is not a namespace folder")


def plain_folder_namespace(folder: str) -> str:
    """How a folder of a plain (Pinecone import) layout names its namespace.

    Pinecone's rule is folder name == namespace, with ``__default__`` for the
    default; spruce's encoded folders are decoded too, so an archive copied
    without its manifest still maps back. Hashed folders stay verbatim.
    """
    if folder == DEFAULT_DIR:
        return ""
    if folder.startswith(ENCODED_PREFIX):
        try:
            name = decode_dir(folder)
        except ValueError:
            return folder
        return folder if name is None else name
    return folder


def part_name(index: int, fmt: str) -> str:
    """``part-00000.jsonl.gz`` and so on: zero-padded to 5 digits, wider past 99999."""
    return f"part-{index:05d}{EXTENSIONS[fmt]}"


def format_of(path: str) -> str | None:
    """The data format a file name implies, or None for files that are not data."""
    low = path.lower()
    if low.endswith((".jsonl.gz", ".ndjson.gz")):
        return "jsonl.gz"
    if low.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if low.endswith(".parquet"):
        return "parquet"
    return None
