"""The storage interface that archives are written to and read from.

Archive code only ever sees a ``Store`` rooted at the archive's URI, with
relative, '/'-separated paths. The crash-safety of the format rests on two
promises every backend keeps: ``open_writer`` makes an object visible only when
closed successfully, and ``put_bytes`` is atomic (used for the manifest).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import BinaryIO, Protocol


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    path: str  # relative to the store's root, '/'-separated
    size: int


class Writer(Protocol):
    """A streaming upload. Nothing is visible until ``close()`` returns; ``abort()`` discards."""

    def write(self, data: bytes | memoryview) -> int: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class Store(ABC):
    """An object store rooted at ``uri``; paths are relative to it."""

    #: The root URI with any credentials removed: safe for manifests, logs and job status.
    uri: str

    @abstractmethod
    def open_writer(self, path: str) -> Writer:
        """Stream bytes to ``path``; the object appears atomically on close()."""

    @abstractmethod
    def put_bytes(self, path: str, data: bytes) -> None:
        """Write a small object in one atomic step (the manifest's commit)."""

    @abstractmethod
    def open_reader(self, path: str) -> BinaryIO:
        """Stream an object's bytes. Raises FileNotFoundError if absent."""

    def get_bytes(self, path: str) -> bytes:
        with self.open_reader(path) as f:
            return f.read()

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix``, recursively, in no particular order."""

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def delete(self, path: str) -> None:
        """Remove an object; absent objects are not an error."""

    def delete_prefix(self, prefix: str) -> int:
        n = 0
        for info in list(self.list(prefix)):
            self.delete(info.path)
            n += 1
        return n

    def remove_incomplete(self) -> int:
        """Remove leftovers of writes that never finished (a killed export); how many.

        Object stores make an object visible only when its upload completes, so by
        default there is nothing to remove.
        """
        return 0

    def signed_url(self, path: str, expires: timedelta) -> str | None:
        """A pre-signed GET URL, or None when this backend cannot sign (local folders)."""
        return None

    def local_path(self, path: str) -> str | None:
        """The filesystem path of an object when the store is a local folder, else None."""
        return None

    def child(self, prefix: str) -> Store:
        """A store rooted at ``prefix`` below this one."""
        raise NotImplementedError
