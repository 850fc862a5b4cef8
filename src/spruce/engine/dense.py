"""Reading a namespace's sealed float32 file without making it the server's resident set.

The sealed rows are memory-mapped (persist.py), so opening an index copies nothing. But
on this kernel the page cache holds an ext4 file in large folios, and a fault maps a
whole folio: gathering the 64 rows a graph proposes through the map measured 110 MB of
the 293 MB file resident after one query, and all of it after a few hundred. So:

* a few scattered rows (the graph's candidates, a fetch) are read with ``pread`` into a
  fresh buffer: 113 us for 64 rows against 62 us through the map, and nothing stays mapped;
* a scan, or a gather of many rows, goes through the map a chunk at a time and hands
  each chunk's pages back (``MADV_DONTNEED``) as it passes. The page cache keeps them,
  so the next scan finds them without disk reads: 12.9 ms against 12.4 ms at 100k x 768.

Either way the bytes are the file's, bit for bit; only who holds the pages changes.
"""

from __future__ import annotations

import mmap
import os
import weakref
from pathlib import Path

import numpy as np

#: rows per step of a scan through the map (about 25 MB at 768-d)
SCAN_ROWS = 8192
#: up to this many rows are read with pread; more go through the map in chunks
PREAD_ROWS = 512

_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


def open_rows(path: Path, rows: int, dim: int) -> np.ndarray:
    """The file's first ``rows`` rows as a read-only memory map that also carries a file
    descriptor for ``pread`` (closed when the map is collected)."""
    m = np.memmap(path, dtype="<f4", mode="r", shape=(rows, dim))
    fd = os.open(path, os.O_RDONLY)
    weakref.finalize(m, os.close, fd)
    m.rows_fd = fd  # type: ignore[attr-defined]
    return m


def _release(base: np.ndarray, start: int, stop: int) -> None:
    mm = getattr(base, "_mmap", None)
    if mm is None or _DONTNEED is None:
        return
    rb = base.strides[0]
    lo = start * rb - start * rb % mmap.PAGESIZE
    mm.madvise(_DONTNEED, lo, min(stop * rb, len(mm)) - lo)


def scan(base: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``base @ q``, releasing a map's pages behind the scan."""
    n = base.shape[0]
    if getattr(base, "_mmap", None) is None or n <= SCAN_ROWS:
        return base @ q
    out = np.empty(n, dtype=np.float32)
    for start in range(0, n, SCAN_ROWS):
        stop = min(start + SCAN_ROWS, n)
        out[start:stop] = base[start:stop] @ q
        _release(base, start, stop)
    return out


def gather(base: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``base[rows]`` (rows in range): read, not mapped, when ``base`` is a sealed file."""
    fd = getattr(base, "rows_fd", None)
    if fd is None or rows.size == 0:
        return base[rows]
    dim = base.shape[1]
    if rows.size <= PREAD_ROWS:
        rb = base.strides[0]
        raw = b"".join([os.pread(fd, rb, r * rb) for r in rows.tolist()])
        if len(raw) != rows.size * rb:
            raise OSError(f"{base.filename}: short read of sealed rows")  # type: ignore[attr-defined]
        return np.frombuffer(raw, dtype="<f4").reshape(rows.size, dim)
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    out = np.empty((rows.size, dim), dtype=np.float32)
    bounds = np.searchsorted(ordered, np.arange(0, base.shape[0] + SCAN_ROWS, SCAN_ROWS))
    for chunk in range(bounds.size - 1):
        i, j = int(bounds[chunk]), int(bounds[chunk + 1])
        if i < j:
            out[order[i:j]] = base[ordered[i:j]]
            _release(base, int(ordered[i]), int(ordered[j - 1]) + 1)
    return out
