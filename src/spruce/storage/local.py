"""Local folders as a Store: temp file + fsync + rename gives the atomicity archives need."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from spruce.storage.base import ObjectInfo, Store

_TMP_MARK = ".spruce-tmp-"


def is_private(path: Path) -> bool:
    """Whether the nearest existing folder at or above ``path`` is owner-only (no group or
    other bits), as a spruce data folder is: then what is created under it is owner-only too."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return stat.S_IMODE(p.stat().st_mode) & 0o077 == 0
    except OSError:
        return False


def make_dirs(path: Path) -> None:
    """``mkdir -p`` whose new folders are 0700 under an owner-only folder (``Path.mkdir``
    gives missing parents the default mode), and the default mode elsewhere."""
    if path.is_dir():
        return
    mode = 0o700 if is_private(path) else 0o777
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=mode)
        except FileExistsError:
            pass


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileWriter:
    """Writes to a hidden temp file; close() fsyncs and renames it into place. Under an
    owner-only folder (a data folder's exports and backups) the file is 0600 from the start."""

    def __init__(self, final: Path) -> None:
        make_dirs(final.parent)
        self._final = final
        self._tmp = final.with_name(f"{_TMP_MARK}{final.name}.{secrets.token_hex(4)}")
        mode = 0o600 if is_private(final.parent) else 0o666  # 0o666: the default, less the umask
        self._f = os.fdopen(os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb")

    def write(self, data: bytes | memoryview) -> int:
        return self._f.write(data)

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self._tmp, self._final)
        _fsync_dir(self._final.parent)

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> _FileWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class LocalStore(Store):
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()
        self.uri = self.root.as_uri()

    def _path(self, path: str) -> Path:
        p = (self.root / path).resolve() if path else self.root
        if p != self.root.resolve() and self.root.resolve() not in p.parents:
            raise ValueError(f"path {path!r} escapes the store root {self.root}")
        return p

    def open_writer(self, path: str) -> _FileWriter:
        return _FileWriter(self._path(path))

    def put_bytes(self, path: str, data: bytes) -> None:
        with self.open_writer(path) as w:
            w.write(data)

    def open_reader(self, path: str) -> BinaryIO:
        return open(self._path(path), "rb")

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self._path(prefix)
        if base.is_file():
            yield ObjectInfo(prefix, base.stat().st_size)
            return
        if not base.is_dir():
            return
        root = self.root.resolve()
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(_TMP_MARK):
                    continue
                full = Path(dirpath) / name
                yield ObjectInfo(full.relative_to(root).as_posix(), full.stat().st_size)

    def exists(self, path: str) -> bool:
        return self._path(path).is_file()

    def delete(self, path: str) -> None:
        self._path(path).unlink(missing_ok=True)

    def remove_incomplete(self) -> int:
        """Delete the hidden temp files of writes that were never closed (the process died)."""
        n = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith(_TMP_MARK):
                    (Path(dirpath) / name).unlink(missing_ok=True)
                    n += 1
        return n

    def local_path(self, path: str) -> str | None:
        return str(self._path(path))

    def child(self, prefix: str) -> LocalStore:
        return LocalStore(self._path(prefix))
