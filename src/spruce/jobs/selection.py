"""Selective restores: which records of a source a restore applies.

A selection has up to three parts, all on the source's side: ``namespaces`` (the source's
names, before ``--namespace-map``), ``ids`` and a metadata ``filter`` (Pinecone's filter
language, ``spruce.filters``). A record is restored when it passes every part given.

The selection is part of the job's options, so a resumed job applies exactly the same one.
Ids can be many, so the job's options hold only their count and sha256; the ids themselves
are kept beside the job's state (``<data>/jobs/<id>.ids``, owner-only, pruned with the job).

A selection that matches no record is an error (EmptySelection) unless ``allow_empty``. A
namespace selection is checked up front against the source; an ids or filter selection only
as the files are read, so a restore commits a file only when something in it matched: when
nothing matched at the end, nothing was committed.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from spruce.errors import InvalidArgument, SpruceError, ValidationError
from spruce.filters import Filter, compile_filter, validate_filter
from spruce.records import DEFAULT_NAMESPACE_ALIAS, RecordBatch, normalize_namespace, validate_id

__all__ = ["IDS_SUFFIX", "EmptySelection", "Selection", "check_selection", "load_selection",
           "read_ids_file", "selection_options", "shown_namespaces"]

IDS_SUFFIX = ".ids"


class EmptySelection(InvalidArgument):
    """The selection matched no record (and ``allow_empty`` was not given): nothing was written."""


def shown_namespaces(names: Iterable[str]) -> str:
    return ", ".join(repr(n or DEFAULT_NAMESPACE_ALIAS) for n in names) or "none"


@dataclass
class Selection:
    """What a restore applies; every part None means "all"."""

    namespaces: frozenset[str] | None = None
    ids: frozenset[str] | None = None
    filter: dict[str, Any] | None = None
    allow_empty: bool = False
    _compiled: Filter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._compiled = compile_filter(self.filter)

    @property
    def by_records(self) -> bool:
        """Whether records must be read to know what is selected (ids or a filter)."""
        return self.ids is not None or self.filter is not None

    def wants(self, namespace: str) -> bool:
        """Whether the source namespace's files are read at all."""
        return self.namespaces is None or namespace in self.namespaces

    def apply(self, batch: RecordBatch) -> tuple[RecordBatch, int]:
        """(the selected records of ``batch``, how many it left out)."""
        if not self.by_records or not len(batch):
            return batch, 0
        keep = [i for i, rid in enumerate(batch.ids) if rid in self.ids] if self.ids is not None else None
        if self.filter is not None:
            rows = keep if keep is not None else range(len(batch))
            metadata = [_decoded(batch.metadata[i]) for i in rows]
            mask = self._compiled.mask(metadata)
            keep = [i for i, ok in zip(rows, mask.tolist(), strict=True) if ok]
        assert keep is not None
        if len(keep) == len(batch):
            return batch, 0
        return batch.take(keep), len(batch) - len(keep)

    def describe(self) -> str:
        """The selection in the command line's words, for messages."""
        parts = []
        if self.namespaces is not None:
            parts.append(f"--namespace {shown_namespaces(sorted(self.namespaces))}")
        if self.ids is not None:
            parts.append(f"{len(self.ids)} id(s) (--ids-file)")
        if self.filter is not None:
            parts.append(f"--filter {orjson.dumps(self.filter).decode()}")
        return "; ".join(parts)

    def empty_error(self) -> EmptySelection:
        return EmptySelection(f"the selection ({self.describe()}) matches no record of the source; nothing was "
                              "written (pass --allow-empty (allow_empty=True) to complete with 0 records)")


def _decoded(md: Any) -> Any:
    return orjson.loads(md) if isinstance(md, (bytes, bytearray)) else md


# -- options ---------------------------------------------------------------------


def selection_options(*, namespaces: Iterable[str] | None, ids: Iterable[str] | None,
                      filter: Mapping[str, Any] | None, allow_empty: bool
                      ) -> tuple[dict[str, Any], list[str] | None]:
    """(the job options that record a selection, the sorted ids to keep beside the job).

    Only the parts given appear in the options, so a restore without a selection has the
    options it always had (``same_command`` still matches its older interrupted jobs)."""
    opts: dict[str, Any] = {}
    if namespaces is not None:
        if isinstance(namespaces, str) or not all(isinstance(n, str) for n in namespaces):
            raise InvalidArgument("namespaces must be a list of namespace names")
        opts["namespaces"] = sorted({normalize_namespace(n) for n in namespaces})
    kept: list[str] | None = None
    if ids is not None:
        if isinstance(ids, (str, bytes)):
            raise InvalidArgument("ids must be a list of record ids, not one string")
        unique: set[str] = set()
        for k, rid in enumerate(ids):
            try:
                unique.add(validate_id(rid))
            except ValidationError as exc:
                raise InvalidArgument(f"ids: id #{k + 1} {exc.reason}") from None
        kept = sorted(unique)
        opts["ids"] = {"count": len(kept), "sha256": _digest(kept)}
    valid = validate_filter(filter)
    if valid is not None:
        opts["filter"] = valid
    if allow_empty:
        opts["allow_empty"] = True
    return opts, kept


def _digest(ids: list[str]) -> str:
    return hashlib.sha256(orjson.dumps(ids)).hexdigest()


def save_ids(path: os.PathLike[str] | str, ids: list[str]) -> None:
    """The job's ids, owner-only like its state, written whole before the job is submitted."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(orjson.dumps(ids))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_selection(state: Any, ids_path: os.PathLike[str] | str) -> Selection | None:
    """The selection a job's options record (None: the job restores everything)."""
    opts = state.options
    if not any(k in opts for k in ("namespaces", "ids", "filter")):
        return None
    ids = None
    if opts.get("ids") is not None:
        want = opts["ids"]
        try:
            with open(ids_path, "rb") as f:
                kept = orjson.loads(f.read())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise SpruceError(f"job {state.id}: its list of ids ({ids_path}) cannot be read ({exc}); "
                              "start the restore again") from None
        if not isinstance(kept, list) or _digest(kept) != want.get("sha256"):
            raise SpruceError(f"job {state.id}: its list of ids ({ids_path}) is not the one it started with; "
                              "start the restore again")
        ids = frozenset(kept)
    names = opts.get("namespaces")
    return Selection(namespaces=frozenset(names) if names is not None else None, ids=ids,
                     filter=opts.get("filter"), allow_empty=bool(opts.get("allow_empty")))


def read_ids_file(path: str) -> list[str]:
    """One id per line (``-``: standard input). Line ends are dropped, blank lines skipped;
    nothing else is trimmed, as an id may begin or end with a space."""
    try:
        data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()  # noqa: SIM115
    except OSError as exc:
        raise InvalidArgument(f"--ids-file {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"--ids-file {path}: not UTF-8 text (byte {exc.start})") from None
    return [line.removesuffix("\r") for line in text.split("\n") if line.removesuffix("\r")]


# -- checks ----------------------------------------------------------------------


def check_selection(source: Any, opts: Mapping[str, Any], sel: Selection | None) -> list[str]:
    """Refuse up front what can be known before reading: the old ``--namespace`` meaning on a
    plain file, a target namespace no file takes, namespaces the source lacks, an empty id
    list, and (archives) a namespace selection whose namespaces hold no record. Returns notes
    (namespaces the source lacks, when ``allow_empty``)."""
    target_ns = normalize_namespace(opts.get("namespace"))
    top_level = source.kind == "plain" and any("/" not in f.path for f in source.files)
    if target_ns and not top_level:
        what = "an archive's records keep their namespaces" if source.kind == "archive" else \
            "every data file of this folder is in a namespace folder of its own"
        raise InvalidArgument(f"--target-namespace {target_ns} names the namespace of a single plain file (or of "
                              f"the files at the top of a plain folder), but {what}; rename namespaces with "
                              "--namespace-map OLD=NEW")
    if sel is None:
        return []
    have = source.namespaces
    notes: list[str] = []
    if sel.namespaces is not None:
        missing = sorted(n for n in sel.namespaces if n not in have)
        if missing and top_level:
            shown = missing[0] or DEFAULT_NAMESPACE_ALIAS
            raise InvalidArgument(
                f"--namespace selects namespaces of the source, but {source.store.uri} holds plain data files "
                f"whose namespace is the one you name: to restore them into namespace {shown!r}, use "
                f"--target-namespace {shown} (namespace= in Python) instead of --namespace")
        if missing and not sel.allow_empty:
            raise InvalidArgument(f"--namespace names namespace(s) {shown_namespaces(missing)} that the source does "
                                  f"not have; it has {shown_namespaces(have)} (--allow-empty restores nothing "
                                  "from a missing one)")
        if missing:
            notes.append(f"the source has no namespace {shown_namespaces(missing)}: nothing is restored from it")
    if sel.allow_empty:
        return notes
    if sel.ids is not None and not sel.ids:
        raise sel.empty_error()
    if sel.namespaces is not None and not any(n in have for n in sel.namespaces):
        raise sel.empty_error()
    if source.manifest is not None and sel.namespaces is not None:
        counts = {ns.name: ns.record_count for ns in source.manifest.namespaces}
        if sum(counts.get(n) or 0 for n in sel.namespaces) == 0:
            raise sel.empty_error()
    return notes
