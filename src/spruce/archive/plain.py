"""Sources to restore from: a spruce archive, or a user's own files with no manifest.

``open_source(store)`` decides: ``manifest.json`` present -> an archive (every
file checked against it); otherwise plain files, either

* one ``.jsonl``, ``.jsonl.gz`` or ``.parquet`` file (``.ndjson`` works too),
  restored into the namespace the caller names (default ""), or
* a folder laid out as Pinecone's bulk import expects: one subfolder per
  namespace (``__default__`` for the default namespace), data files inside,
  at any depth. Data files directly in the folder go to the caller's namespace.
  Files with other extensions are ignored, as Pinecone's import ignores them.

Both kinds are read through the same ``Source.read``; a bad record raises a
ValidationError naming file, line (JSON Lines) or record (the 0-based Parquet
row) and field, or, with ``on_error``, is skipped and reported.

An encrypted archive is opened with its key (``open_source(store, key=ArchiveKey...)``): the
key is checked at once (WrongKey; ManifestTampered when the manifest's HMAC fails), and every
file then decrypts as it is read. Opened without it, the manifest and the files' checksums
are usable, and reading records raises ArchiveLocked (``Source.require_key()`` says so up front).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from spruce.archive.decode import OnError, Shape
from spruce.archive.manifest import MANIFEST_NAME, Manifest
from spruce.archive.naming import PART_PATH_RE, format_of, plain_folder_namespace
from spruce.archive.reader import DEFAULT_BATCH_SIZE, ArchiveReader, SourceFile, read_data_file
from spruce.errors import ArchiveIncomplete, InvalidArgument, ValidationError
from spruce.records import RecordBatch, normalize_namespace
from spruce.storage.base import Store

if TYPE_CHECKING:
    from spruce.archive.keys import ArchiveCipher, ArchiveKey

__all__ = ["Source", "SourceFile", "open_source"]


def _natural_key(path: str) -> list[object]:
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", path)]


@dataclass
class Source:
    """Data files to restore, in order, and how to read them."""

    store: Store
    kind: Literal["archive", "plain"]
    files: list[SourceFile]
    manifest: Manifest | None = None
    _inferred: tuple[int | None, str] | None = field(default=None, repr=False)
    #: an encrypted archive's cipher (locked when opened without the key); None otherwise
    cipher: ArchiveCipher | None = field(default=None, repr=False)

    @property
    def encrypted(self) -> bool:
        return self.cipher is not None

    def require_key(self) -> None:
        """ArchiveLocked when this is an encrypted archive opened without its key."""
        if self.cipher is not None:
            self.cipher.require()

    @property
    def namespaces(self) -> list[str]:
        """Namespaces in order of first appearance (an archive lists even empty ones)."""
        if self.manifest is not None:
            return [ns.name for ns in self.manifest.namespaces]
        seen: dict[str, None] = {}
        for f in self.files:
            seen.setdefault(f.namespace, None)
        return list(seen)

    def files_for(self, namespace: str) -> list[SourceFile]:
        return [f for f in self.files if f.namespace == namespace]

    @property
    def total_records(self) -> int | None:
        """Known up front for archives; None for plain files."""
        return self.manifest.totals["records"] if self.manifest is not None else None

    def read(
        self,
        file: SourceFile,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        dimension: int | None = None,
        vector_type: str | None = None,
        on_error: OnError | None = None,
        hash_alongside: bool = False,
    ) -> Iterator[RecordBatch]:
        """Yield the file's records in batches, validated against ``dimension``/``vector_type``.

        Both default to the archive's source index, or, for plain files, to what
        the file's first record shows. ``on_error=None`` raises at the first bad
        record; a callable gets each bad record's ValidationError and the record
        is skipped. Archive files are also checked against the manifest
        (IntegrityError subclasses; a bad record is a CorruptRecord). ``hash_alongside``: see
        read_data_file.
        """
        if self.kind == "archive":
            assert self.manifest is not None
            dimension = self.manifest.dimension if dimension is None else dimension
            vector_type = vector_type or self.manifest.vector_type
        return read_data_file(self.store, file, batch_size=batch_size, on_error=on_error,
                              strict=self.kind == "archive", shape=Shape(dimension, vector_type),
                              hash_alongside=hash_alongside)

    def infer(self) -> tuple[int | None, str]:
        """(dimension or None, "dense" | "sparse"): what an index for this data needs.

        An archive says so in its manifest. For plain files it is the first
        record's: its values' length, and "sparse" when it has no dense values.
        """
        if self.manifest is not None:
            return self.manifest.dimension, self.manifest.vector_type
        if self._inferred is None:
            self._inferred = (None, "dense")
            for f in self.files:
                shape = Shape()
                try:
                    for _ in read_data_file(self.store, f, batch_size=1, shape=shape,
                                            on_error=lambda _e: None):
                        break
                except ValidationError:
                    continue
                if shape.vector_type is not None:
                    self._inferred = (shape.dimension, shape.vector_type)
                    break
        return self._inferred


def open_source(store: Store, path: str = "", *, namespace: str = "", force_plain: bool = False,
                key: ArchiveKey | None = None) -> Source:
    """Open what ``store`` (and optionally ``path`` inside it) holds for a restore.

    ``namespace`` is where a single file, or data files at the top of a folder,
    go. A folder holding only spruce part files but no manifest is an export
    that never committed: ArchiveIncomplete, unless ``force_plain`` is set.
    ``key`` unlocks an encrypted archive, and is checked here (WrongKey, ManifestTampered);
    it is not used for anything that is not an encrypted archive.
    """
    path = path.strip("/")
    namespace = normalize_namespace(namespace)
    name = path.rsplit("/", 1)[-1] if path else store.uri.rstrip("/").rsplit("/", 1)[-1]
    fmt = format_of(name)
    if fmt is not None and (store.exists(path) if path else _root_is_file(store)):
        return Source(store=store, kind="plain",
                      files=[SourceFile(namespace=namespace, path=path, format=fmt)])

    if not force_plain:
        root = store.child(path) if path else store
        if root.exists(MANIFEST_NAME):
            reader = ArchiveReader(root, key=key)
            return Source(store=root, kind="archive", files=reader.files(), manifest=reader.manifest,
                          cipher=reader.cipher)

    prefix = f"{path}/" if path else ""
    files: list[SourceFile] = []
    rels: list[str] = []
    archives: list[str] = []
    for info in store.list(path):
        rel = info.path[len(prefix):] if info.path.startswith(prefix) else info.path
        if rel.endswith(f"/{MANIFEST_NAME}"):
            archives.append(rel[: -len(MANIFEST_NAME) - 1])
        fmt = format_of(rel)
        if fmt is None or any(seg.startswith(".") for seg in rel.split("/")):
            continue
        folder, sep, _ = rel.partition("/")
        ns = plain_folder_namespace(folder) if sep else namespace
        files.append(SourceFile(namespace=ns, path=info.path, format=fmt))
        rels.append(rel)
    where = f"{store.uri.rstrip('/')}{'/' + path if path else ''}"
    if archives and not force_plain:
        # a folder of backups: reading their parts as plain files would merge their namespaces
        shown = ", ".join(sorted(archives)[:10]) + (f" and {len(archives) - 10} more" if len(archives) > 10 else "")
        raise InvalidArgument(f"{where}: holds {len(archives)} archive(s) but no {MANIFEST_NAME} of its own "
                              f"({shown}); restore one of them, e.g. {where}/{sorted(archives)[0]}")
    if not files:
        raise InvalidArgument(f"{store.uri}{'/' + path if path else ''}: no manifest.json and no "
                              ".jsonl, .jsonl.gz or .parquet files to restore")
    if not force_plain and all(PART_PATH_RE.fullmatch(r) for r in rels):
        raise ArchiveIncomplete(
            f"{store.uri}{'/' + path if path else ''}: holds spruce archive parts but no {MANIFEST_NAME}: "
            "the export never committed (it crashed, was cancelled or is still running); "
            "export again, or read the files as plain data with force_plain=True")
    files.sort(key=lambda f: (_natural_key(f.namespace), _natural_key(f.path)))
    return Source(store=store, kind="plain", files=files)


def _root_is_file(store: Store) -> bool:
    """True when the store is rooted at a single object (a URI naming one file)."""
    try:
        objs = list(store.list(""))
    except (OSError, ValueError):
        return False
    return len(objs) == 1 and objs[0].path in ("", ".")
