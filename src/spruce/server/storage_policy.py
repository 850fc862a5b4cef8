"""Where the server may read and write on its own filesystem: the storage roots.

Imports, exports and backups take a storage URI from the request. A local one (a
plain path or ``file://``) is resolved on the server, symlinks and ``..``
included, and must land inside one of the configured roots (``--storage-root``,
repeatable; by default ``<data>/exports``). A relative path is taken relative to the
first root, so ``"my-export"`` means ``<data>/exports/my-export``. Anything else is
refused with 403 before a job exists, with a message that names the allowed roots
relative to the data folder (never the server's absolute paths).

The backup folder is never reachable this way, even inside a root: backups are written
and read only through ``/backups``, so an export cannot replace a backup's data behind
its catalog entry, and nothing can write into the catalog itself.

Object-store URIs (``s3://``, ``gs://``, ``az://``) are read and written with the
server's own credentials (its environment). When object-store roots are
configured (``--storage-root s3://bucket/prefix``), such URIs must lie under one
of them too; otherwise any bucket the server's credentials reach is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from spruce.errors import Forbidden, InvalidArgument
from spruce.storage import StorageURI, parse_storage_uri
from spruce.storage.local import make_dirs

__all__ = ["MAX_URI_LENGTH", "StoragePolicy"]

#: Longer URIs are refused up front (no object store or file system takes more).
MAX_URI_LENGTH = 2048


class StoragePolicy:
    """The configured roots, and the check every server-side storage URI goes through."""

    def __init__(self, roots: Iterable[str | os.PathLike[str]], *, exclude: Iterable[str | os.PathLike[str]] = (),
                 data_dir: str | os.PathLike[str] | None = None) -> None:
        self.local_roots: list[Path] = []
        self.remote_roots: list[StorageURI] = []
        self.data_dir = Path(os.path.realpath(data_dir)) if data_dir else None
        self.excluded_local: list[Path] = []
        self.excluded_remote: list[StorageURI] = []
        for path in exclude:
            loc = parse_storage_uri(os.fspath(path))
            if loc.is_local:
                self.excluded_local.append(Path(os.path.realpath(loc.path.expanduser())))
            else:
                self.excluded_remote.append(loc)
        for root in roots:
            loc = parse_storage_uri(os.fspath(root))
            if loc.is_local:
                path = Path(os.path.realpath(loc.path.expanduser()))
                if path not in self.local_roots:
                    self.local_roots.append(path)
            else:
                self.remote_roots.append(loc)
        if not self.local_roots:
            raise InvalidArgument("at least one local storage root is needed")

    @property
    def default_root(self) -> Path:
        """Where relative paths land."""
        return self.local_roots[0]

    def ensure_roots(self) -> None:
        for root in self.local_roots:
            make_dirs(root)  # 0700 inside the (owner-only) data folder

    def _name(self, i: int, root: Path) -> str:
        """A root as a client may see it: relative to the data folder, else by its number."""
        if self.data_dir is not None and (root == self.data_dir or self.data_dir in root.parents):
            rel = root.relative_to(self.data_dir).as_posix()
            return "<data>" if rel == "." else f"<data>/{rel}"
        return f"storage root #{i + 1}"

    def describe(self) -> str:
        return ", ".join([self._name(i, p) for i, p in enumerate(self.local_roots)] +
                         [str(r) for r in self.remote_roots])

    def check(self, uri: str, *, what: str = "storage URI") -> str:
        """The canonical, credential-free URI the server should use for ``uri``, or Forbidden."""
        if not isinstance(uri, str) or not uri.strip():
            raise InvalidArgument(f"{what} is required")
        if "\x00" in uri:
            raise InvalidArgument(f"{what} contains a NUL byte")
        if len(uri) > MAX_URI_LENGTH:
            raise InvalidArgument(f"{what} is {len(uri):,} characters long; at most {MAX_URI_LENGTH:,} are accepted")
        loc = parse_storage_uri(uri)  # InvalidArgument (never echoing credentials) when unusable
        if loc.is_local:
            return self._check_local(loc).as_uri()
        if any(_under(loc, ex) or _under(ex, loc) for ex in self.excluded_remote):
            raise Forbidden(f"{what} {loc} is in the backup store; use /backups to create and restore backups")
        if self.remote_roots and not any(_under(loc, root) for root in self.remote_roots):
            raise Forbidden(f"{what} {loc} is outside the server's storage roots; allowed: {self.describe()}")
        return str(loc)

    def contains(self, path: str | os.PathLike[str]) -> bool:
        real = Path(os.path.realpath(path))
        return any(real == root or root in real.parents for root in self.local_roots)

    def _check_local(self, loc: StorageURI) -> Path:
        raw = Path(loc.prefix).expanduser()
        if raw.is_absolute():
            candidate = raw
        elif loc.prefix.startswith("~"):
            candidate = raw.absolute()
        else:
            candidate = self.default_root / raw
        # realpath follows every symlink that exists and folds '..' after it, so a link or a
        # '../..' that leads out of a root is caught here, before any job touches the path
        real = Path(os.path.realpath(candidate))
        if any(real == ex or ex in real.parents or real in ex.parents for ex in self.excluded_local):
            raise Forbidden(f"server-side path {loc.prefix!r} is (or holds) the backup folder; backups are "
                            "created and restored only through /backups")
        if not any(real == root or root in real.parents for root in self.local_roots):
            raise Forbidden(f"server-side path {loc.prefix!r} resolves outside the server's storage roots "
                            f"({self.describe()}); use a path inside one of them (a relative path is taken "
                            f"relative to {self._name(0, self.default_root)}), or start the server with "
                            "--storage-root")
        return real


def _under(loc: StorageURI, root: StorageURI) -> bool:
    if (loc.scheme, loc.bucket, loc.account) != (root.scheme, root.bucket, root.account):
        return False
    if not root.prefix:
        return True
    return loc.prefix == root.prefix or loc.prefix.startswith(root.prefix.rstrip("/") + "/")
