"""manifest.json: the typed model, its JSON Schema, and every check a reader makes.

The manifest is an archive's commit record (docs/FORMAT.md). A reader trusts
nothing in it until :func:`parse_manifest` has validated it against the JSON
Schema *and* checked what a schema cannot say: totals are the sums, namespace
names and folders are unique and match, each file sits inside its namespace's
folder and has the archive's format.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jsonschema

from spruce.archive.naming import EXTENSIONS, PART_PATH_RE, encode_namespace
from spruce.errors import InvalidArgument, ManifestInvalid

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "spruce-archive"
FORMAT_VERSION = 1
FORMATS: tuple[str, ...] = ("jsonl.gz", "jsonl", "parquet")
CONSISTENCY: tuple[str, ...] = ("snapshot", "live")

_CREDENTIAL_QUERY_KEYS = re.compile(
    r"(?i)^(x-amz-(signature|credential|security-token)|signature|sig|se|sp|sv|token|access_?token|"
    r"api[-_]?key|apikey|key|secret|password|credential)$")


@cache
def load_schema() -> dict[str, Any]:
    """The packaged JSON Schema (identical to docs/archive.schema.json)."""
    text = resources.files("spruce.archive").joinpath("archive.schema.json").read_text("utf-8")
    return json.loads(text)


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def utc_now() -> str:
    """RFC 3339 UTC with millisecond precision and a Z, as the manifest wants."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# -- the model -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One data part: where it is, how many records, and its exact bytes."""

    path: str
    records: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "records": self.records, "bytes": self.bytes, "sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class TombstoneEntry:
    """An incremental snapshot's deleted ids for one namespace: a checksummed file of its own."""

    path: str
    count: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "count": self.count, "bytes": self.bytes, "sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class NamespaceEntry:
    """One namespace of the archive. A namespace without records has no files; it is listed all
    the same, so that a restore recreates it. ``schema`` is its metadata schema, when it has one."""

    name: str
    dir: str
    record_count: int
    files: tuple[FileEntry, ...] = ()
    schema: dict[str, Any] | None = None
    #: backup snapshots only: records in the namespace at the snapshot
    total_records: int | None = None
    #: incremental snapshots only: all its records at the parent were deleted since
    reset: bool = False
    #: incremental snapshots only: the ids deleted since the parent
    tombstones: TombstoneEntry | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "dir": self.dir, "record_count": self.record_count,
                             "files": [f.to_dict() for f in self.files]}
        if self.schema is not None:  # absent, not null: archives without schemas stay as before
            d["schema"] = self.schema
        if self.total_records is not None:
            d["total_records"] = self.total_records
        if self.reset:
            d["reset"] = True
        if self.tombstones is not None:
            d["tombstones"] = self.tombstones.to_dict()
        return d


@dataclass(frozen=True, slots=True)
class Manifest:
    """A validated manifest. ``to_dict()`` gives back exactly the JSON fields."""

    export_id: str
    created_at: str
    spruce_version: str
    source: dict[str, Any]
    consistency: str
    snapshot: dict[str, Any]
    selection: dict[str, Any]
    data: dict[str, Any]
    namespaces: tuple[NamespaceEntry, ...]
    totals: dict[str, int] = field(default_factory=dict)
    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION
    #: backup snapshots only: snapshot_id, parent, since, index_uid, tags, deleted_namespaces
    backup: dict[str, Any] | None = None
    #: encrypted archives only: algorithm, segment_size, archive_nonce, key, manifest_hmac (spruce.archive.keys)
    encryption: dict[str, Any] | None = None

    @property
    def is_incremental(self) -> bool:
        return self.backup is not None and self.backup.get("parent") is not None

    @property
    def encrypted(self) -> bool:
        return self.encryption is not None

    @property
    def tombstone_files(self) -> list[TombstoneEntry]:
        return [ns.tombstones for ns in self.namespaces if ns.tombstones is not None]

    # convenience views
    @property
    def file_format(self) -> str:
        return self.data["format"]

    @property
    def dimension(self) -> int | None:
        return self.source.get("dimension")

    @property
    def vector_type(self) -> str:
        return self.source.get("vector_type", "dense")

    @property
    def files(self) -> list[FileEntry]:
        return [f for ns in self.namespaces for f in ns.files]

    def namespace(self, name: str) -> NamespaceEntry:
        for ns in self.namespaces:
            if ns.name == name:
                return ns
        raise KeyError(name)

    def namespace_of(self, file: FileEntry) -> NamespaceEntry:
        for ns in self.namespaces:
            if file in ns.files:
                return ns
        raise KeyError(file.path)

    def refuse_incremental(self, where: str) -> None:
        """An incremental snapshot holds only changes: applied alone it would make an index that
        never existed. Only a restore of its chain (from its repository) may read it."""
        if self.is_incremental:
            b = self.backup or {}
            raise InvalidArgument(
                f"{where} is an incremental backup snapshot ({b.get('snapshot_id')}, parent {b.get('parent')}): it "
                "holds only the changes since its parent; restore it from its repository with "
                f"`spruce restore REPO INDEX --snapshot {b.get('snapshot_id')}`")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "version": self.version,
            "export_id": self.export_id,
            "created_at": self.created_at,
            "spruce_version": self.spruce_version,
            "source": self.source,
            "consistency": self.consistency,
            "snapshot": self.snapshot,
            "selection": self.selection,
            "data": self.data,
            "namespaces": [ns.to_dict() for ns in self.namespaces],
            "totals": dict(self.totals),
        } | ({"backup": self.backup} if self.backup is not None else {}) | (
            {"encryption": self.encryption} if self.encryption is not None else {})

    def to_json(self) -> bytes:
        """The bytes written as manifest.json: UTF-8, 2-space indent, final newline."""
        d = self.to_dict()
        try:
            text = json.dumps(d, indent=2, ensure_ascii=False, allow_nan=False)
            return text.encode("utf-8") + b"\n"
        except UnicodeEncodeError:  # lone surrogates in a name: escape them
            return json.dumps(d, indent=2, ensure_ascii=True, allow_nan=False).encode("ascii") + b"\n"


def compute_totals(namespaces: Iterable[NamespaceEntry]) -> dict[str, int]:
    nss = list(namespaces)
    return {
        "namespaces": len(nss),
        "records": sum(ns.record_count for ns in nss),
        "files": sum(len(ns.files) for ns in nss),
        "bytes": sum(f.bytes for ns in nss for f in ns.files),
    }


# -- building ------------------------------------------------------------------


def source_fields(source: Any) -> dict[str, Any]:
    """The manifest's ``source`` object from an IndexConfig-like object or a mapping.

    Accepts ``name`` as an alias of ``index``; drops keys the format has no place for.
    """
    if source is None:
        raise InvalidArgument("commit() needs source: the index the records came from")
    if not isinstance(source, Mapping):
        to_dict = getattr(source, "to_dict", None)
        if to_dict is None:
            raise InvalidArgument(f"source must be a mapping or an IndexConfig, got {type(source).__name__}")
        # an IndexConfig: deletion_protection is a backup's to record (older readers refuse the key)
        source = {k: v for k, v in to_dict().items() if k != "deletion_protection"}
    src = dict(source)
    if "index" not in src and "name" in src:
        src["index"] = src["name"]
    out: dict[str, Any] = {
        "index": src.get("index"),
        "dimension": src.get("dimension"),
        "metric": src.get("metric", "cosine"),
        "vector_type": src.get("vector_type", "dense"),
        "spec": dict(src.get("spec") or {}),
    }
    if src.get("tags"):
        out["tags"] = dict(src["tags"])
    for key in ("host", "kind", "deletion_protection", "uid"):
        if src.get(key) is not None:
            out[key] = src[key]
    if out.get("host"):
        check_no_credentials(out["host"], what="source.host")
    return out


def check_no_credentials(value: str, *, what: str) -> None:
    """Refuse a URI that carries credentials (user:password@, signed-URL or key parameters).

    Manifests travel with the data (copied, shared, attached to tickets), so a
    secret in one would leak. Callers pass credential-free URIs (Store.uri is one).
    """
    if not isinstance(value, str):
        return
    parts = urlsplit(value if "://" in value else f"//{value}")
    if parts.username or parts.password or "@" in parts.netloc:
        raise InvalidArgument(f"{what} must not contain credentials (user or password in the URI)")
    for key, _ in parse_qsl(parts.query, keep_blank_values=True):
        if _CREDENTIAL_QUERY_KEYS.match(key):
            raise InvalidArgument(f"{what} must not contain credentials (query parameter {key!r})")


def build_manifest(
    *,
    export_id: str,
    spruce_version: str,
    source: Any,
    consistency: str,
    snapshot: Mapping[str, Any] | None,
    selection: Mapping[str, Any] | None,
    data: Mapping[str, Any],
    namespaces: Iterable[NamespaceEntry],
    created_at: str | None = None,
    backup: Mapping[str, Any] | None = None,
    encryption: Mapping[str, Any] | None = None,
) -> Manifest:
    """Assemble a manifest and run the reader's checks on it, so a writer never commits a bad one."""
    nss = tuple(namespaces)
    snap = dict(snapshot or {})
    sel = dict(selection or {})
    m = Manifest(
        export_id=export_id,
        created_at=created_at or utc_now(),
        spruce_version=spruce_version,
        source=source_fields(source),
        consistency=consistency,
        snapshot={"point": snap.get("point"), "taken_at": snap.get("taken_at")},
        selection={"namespaces": None if sel.get("namespaces") is None else list(sel["namespaces"]),
                   "filter": None if sel.get("filter") is None else dict(sel["filter"])},
        data=dict(data),
        namespaces=nss,
        totals=compute_totals(nss),
        backup=None if backup is None else dict(backup),
        encryption=None if encryption is None else dict(encryption),
    )
    doc = m.to_dict()
    errors = list(_schema_errors(doc)) or check_consistency(doc)
    if errors:
        raise InvalidArgument("refusing to write an invalid manifest: " + "; ".join(errors))
    return m


# -- reading and checking ------------------------------------------------------


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def _schema_errors(doc: Any) -> Iterable[str]:
    for err in sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        yield f"{where}: {err.message}"


def check_consistency(doc: Mapping[str, Any]) -> list[str]:
    """What the schema cannot express. Returns a list of problems (empty when consistent)."""
    problems: list[str] = []
    fmt = doc["data"]["format"]
    ext = EXTENSIONS[fmt]
    names: set[str] = set()
    dirs: set[str] = set()
    paths: set[str] = set()
    records = files = size = 0
    for i, ns in enumerate(doc["namespaces"]):
        where = f"namespaces/{i}"
        name, folder = ns["name"], ns["dir"]
        if name in names:
            problems.append(f"{where}: namespace {name!r} is listed twice")
        names.add(name)
        if folder in dirs:
            problems.append(f"{where}: folder {folder!r} is used by two namespaces")
        dirs.add(folder)
        if encode_namespace(name) != folder:
            problems.append(f"{where}: folder {folder!r} is not the folder of namespace {name!r} "
                            f"(expected {encode_namespace(name)!r})")
        count = 0
        for j, f in enumerate(ns["files"]):
            path = f["path"]
            m = PART_PATH_RE.fullmatch(path)
            if ".." in path.split("/") or m is None:
                problems.append(f"{where}/files/{j}: {path!r} is not a part path")
                continue
            if m.group(1) != folder:
                problems.append(f"{where}/files/{j}: {path!r} is outside the namespace folder {folder!r}")
            if not path.endswith(ext):
                problems.append(f"{where}/files/{j}: {path!r} does not have the archive's format {fmt!r}")
            if path in paths:
                problems.append(f"{where}/files/{j}: {path!r} is listed twice")
            paths.add(path)
            count += f["records"]
            size += f["bytes"]
            files += 1
        if count != ns["record_count"]:
            problems.append(f"{where}: record_count is {ns['record_count']} but its files hold {count}")
        records += ns["record_count"]
    totals = doc["totals"]
    expected = {"namespaces": len(doc["namespaces"]), "records": records, "files": files, "bytes": size}
    for key, value in expected.items():
        if totals[key] != value:
            problems.append(f"totals/{key} is {totals[key]} but the namespaces add up to {value}")
    sel = doc["selection"].get("namespaces")
    if sel is not None and len(set(sel)) != len(sel):
        problems.append("selection/namespaces lists a namespace twice")
    problems.extend(_backup_problems(doc))
    return problems


def _backup_problems(doc: Mapping[str, Any]) -> list[str]:
    """A snapshot's own rules: a full one is an ordinary archive of one moment; an incremental
    one holds only changes, and says exactly which."""
    problems: list[str] = []
    backup = doc.get("backup")
    nss = doc["namespaces"]
    if backup is None:
        for i, ns in enumerate(nss):
            for key in ("total_records", "reset", "tombstones"):
                if key in ns:
                    problems.append(f"namespaces/{i}: {key!r} belongs to backup snapshots only")
        return problems
    if doc["consistency"] != "snapshot" or doc["snapshot"].get("point") is None:
        problems.append("backup: a backup snapshot must be of one moment (consistency 'snapshot' with a point)")
    incremental = backup["parent"] is not None
    if incremental != (backup["since"] is not None):
        problems.append("backup: 'since' is set exactly when 'parent' is")
    point = doc["snapshot"].get("point")
    if incremental and point is not None and backup["since"] > point:
        problems.append(f"backup: since {backup['since']} is after the snapshot's point {point}")
    if backup["parent"] == backup["snapshot_id"]:
        problems.append("backup: a snapshot cannot be its own parent")
    names = {ns["name"] for ns in nss}
    gone = backup["deleted_namespaces"]
    if len(set(gone)) != len(gone) or names & set(gone):
        problems.append("backup: deleted_namespaces repeats a name or names a listed namespace")
    if gone and not incremental:
        problems.append("backup: a full snapshot deletes no namespace")
    for i, ns in enumerate(nss):
        where = f"namespaces/{i}"
        total = ns.get("total_records")
        if total is None:
            problems.append(f"{where}: a backup snapshot gives every namespace's total_records")
            continue
        if not incremental:
            if ns.get("reset") or "tombstones" in ns:
                problems.append(f"{where}: a full snapshot has no reset and no tombstones")
            if total != ns["record_count"]:
                problems.append(f"{where}: total_records {total} differs from record_count {ns['record_count']} "
                                "in a full snapshot")
        elif ns.get("reset") and total != ns["record_count"]:
            problems.append(f"{where}: after a reset every record is new, so total_records must equal record_count")
        elif total < ns["record_count"]:
            problems.append(f"{where}: total_records {total} is less than the {ns['record_count']} records written")
        tomb = ns.get("tombstones")
        if tomb is not None and tomb["path"] != f"{ns['dir']}/tombstones.jsonl.gz":
            problems.append(f"{where}/tombstones: {tomb['path']!r} is not {ns['dir']}/tombstones.jsonl.gz")
    return problems


def parse_manifest(raw: bytes, *, where: str = MANIFEST_NAME) -> Manifest:
    """Parse, schema-validate and consistency-check manifest bytes; ManifestInvalid on any problem."""
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as e:
        raise ManifestInvalid(f"{where}: not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ManifestInvalid(f"{where}: must be a JSON object, got {type(doc).__name__}")
    if doc.get("format") != FORMAT_NAME:
        raise ManifestInvalid(f"{where}: 'format' is {doc.get('format')!r}, expected {FORMAT_NAME!r}: "
                              "this is not a spruce archive manifest")
    version = doc.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise ManifestInvalid(f"{where}: archive format version {version} is newer than this spruce "
                              f"reads (up to {FORMAT_VERSION}); upgrade spruce")
    errors = list(_schema_errors(doc))
    if errors:
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise ManifestInvalid(f"{where}: does not match the archive schema: {'; '.join(errors[:3])}{more}")
    problems = check_consistency(doc)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ManifestInvalid(f"{where}: inconsistent: {'; '.join(problems[:3])}{more}")
    _check_finite(doc, where)
    return manifest_from_dict(doc)


def _check_finite(doc: Any, where: str) -> None:
    stack = [doc]
    while stack:
        v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            raise ManifestInvalid(f"{where}: holds a non-finite number")
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def manifest_from_dict(doc: Mapping[str, Any]) -> Manifest:
    """Build the model from an already validated document."""
    return Manifest(
        export_id=doc["export_id"],
        created_at=doc["created_at"],
        spruce_version=doc["spruce_version"],
        source=dict(doc["source"]),
        consistency=doc["consistency"],
        snapshot=dict(doc["snapshot"]),
        selection=dict(doc["selection"]),
        data=dict(doc["data"]),
        namespaces=tuple(
            NamespaceEntry(
                name=ns["name"], dir=ns["dir"], record_count=ns["record_count"],
                files=tuple(FileEntry(path=f["path"], records=f["records"], bytes=f["bytes"],
                                      sha256=f["sha256"]) for f in ns["files"]),
                schema=ns.get("schema"),
                total_records=ns.get("total_records"),
                reset=bool(ns.get("reset", False)),
                tombstones=None if "tombstones" not in ns else TombstoneEntry(**ns["tombstones"]),
            )
            for ns in doc["namespaces"]
        ),
        totals=dict(doc["totals"]),
        format=doc["format"],
        version=doc["version"],
        backup=None if doc.get("backup") is None else dict(doc["backup"]),
        encryption=None if doc.get("encryption") is None else dict(doc["encryption"]),
    )
