"""The one small interface every connector implements, and what they share.

A connector is one collection (or table) of another vector database, named by a URI. Reading
walks each namespace with the engine's own scalable cursor; writing upserts idempotently, so a
copy that is resumed after a crash converges to the same result. Retry, progress, cancellation,
job state and the final count check live in ``spruce.sources.copy``, written once for all.

Why a namespace is a tag and not a collection: most engines make collections expensive, and
Pinecone users have many namespaces. Every record carries its namespace (a payload field, a key
column, a partition key), and reading back restores the namespaces exactly, the default one
included. ``{namespace}`` in the collection name asks for one collection per namespace instead.
"""

from __future__ import annotations

import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from spruce.errors import InvalidArgument, SpruceError
from spruce.records import RecordBatch

#: Where the original string id lives in engines whose ids are not free strings (Qdrant's
#: payload field, as qdrant/migration writes it).
ID_FIELD = "__id__"
#: The namespace tag, absent for the default namespace (so data written by other tools reads
#: as the default namespace).
NAMESPACE_FIELD = "__namespace__"
#: The placeholder that asks for one collection/table per namespace.
NAMESPACE_PLACEHOLDER = "{namespace}"
#: The connectors' optional dependencies.
EXTRA = "spruce[connectors]"


class ConnectorError(SpruceError):
    """The other engine refused or failed a request; the message says which and why."""


class LossyCopy(InvalidArgument):
    """The target cannot hold something the source has; refused unless allow_lossy."""


@dataclass(frozen=True)
class Shape:
    """What a collection holds: the dense dimension (None for sparse-only), metric, vector type,
    and whether it holds sparse values beside dense ones."""

    dimension: int | None
    metric: str
    vector_type: str = "dense"
    sparse: bool = False

    def refuse_other(self, have: Shape | None, where: str) -> None:
        """Refuse to write this shape into ``where`` when it already holds another dimension or
        metric: the records would be unsearchable there, or refused one page in."""
        if have is not None and self.dimension is not None and \
                (have.dimension, have.metric) != (self.dimension, self.metric):
            raise InvalidArgument(f"{where} holds dimension {have.dimension} {have.metric}; the source is "
                                  f"dimension {self.dimension} {self.metric}")


@dataclass
class Page:
    """One page of records from a namespace, and the cursor of the next (None: no more)."""

    batch: RecordBatch
    cursor: Any = None


@dataclass
class Losses:
    """What a copy could not carry over exactly, counted per kind, with an example record each."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, record_id: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n
        self.examples.setdefault(kind, record_id)

    def lines(self) -> list[str]:
        return [f"{kind}: {n:,} record(s), e.g. {self.examples[kind]!r}" for kind, n in sorted(self.counts.items())]

    def __bool__(self) -> bool:
        return bool(self.counts)


class Connector(ABC):
    """One collection of another engine. Subclasses implement the engine's side only."""

    #: The URI scheme(s) this connector answers to.
    schemes: tuple[str, ...] = ()
    #: Read page size (records); engines with cheap pages may raise it.
    page_size: int = 1000
    #: Write batch size (records).
    write_batch: int = 500

    #: What the manifest's ``source.kind`` says (the engine).
    kind: str = "spruce"

    def __init__(self, uri: str) -> None:
        self.uri = uri
        #: A short name for the collection (the manifest's ``source.index``, at most 45 characters).
        self.label = uri
        #: The shape of the data about to be written (set by the copy before its first check).
        self.expected: Shape | None = None

    # -- reading ---------------------------------------------------------------------------
    @abstractmethod
    def shape(self) -> Shape | None:
        """The collection's shape, or None when it does not exist."""

    @abstractmethod
    def namespaces(self) -> list[str]:
        """Every namespace with at least one record ("" for the default)."""

    @abstractmethod
    def count(self, namespace: str) -> int:
        """The exact number of records in ``namespace``."""

    def total(self) -> int:
        """All records of the collection, every namespace. Asked after every page a copy writes
        (its resume check compares it), so engines override it with their cheapest exact count."""
        return sum(self.count(ns) for ns in self.namespaces())

    def existing(self, namespace: str, ids: list[str]) -> int | None:
        """How many of ``ids`` the collection holds in ``namespace`` (None: the engine cannot say
        cheaply). A resume uses it to tell the page it had in flight from someone else's write."""
        return None

    @abstractmethod
    def read(self, namespace: str, cursor: Any, limit: int) -> Page:
        """Up to ``limit`` records after ``cursor`` (None: from the start), in a stable order.
        The returned cursor is JSON-serializable: it is stored in the job state."""

    # -- writing ---------------------------------------------------------------------------
    @abstractmethod
    def ensure(self, shape: Shape) -> None:
        """Create the collection for ``shape`` if missing; refuse one whose shape differs."""

    @abstractmethod
    def write(self, namespace: str, batch: RecordBatch) -> None:
        """Upsert ``batch`` so that each record is replaced whole (idempotent: a replay converges)."""

    def check(self, namespace: str, batch: RecordBatch, losses: Losses) -> RecordBatch:
        """Record in ``losses`` what this engine cannot hold exactly; return the batch to write
        (converted by the engine's documented rule). The default holds everything."""
        return batch

    def close(self) -> None:  # noqa: B027 - most engines have something to release, not all
        """Release the client (and any file lock a local engine holds)."""

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def accept_namespaces(self, namespaces: list[str]) -> None:
        """Refuse, before anything is written, namespaces this target cannot keep apart (say,
        two that would get one collection name). Nothing to refuse by default."""
        return None

    def fresh(self, namespace: str) -> bool:
        """Whether ``namespace`` was empty when this connector first asked. Until a write fails,
        every id this connector writes there is new (a source's ids are unique in a namespace),
        so an append does what an upsert would, for a fraction of the engine's work. A resumed
        copy opens a new connector, finds records, and upserts; a write that fails calls
        ``not_fresh`` so its retry upserts; and the copy's final count check (exact when the
        target started empty) catches another writer that slipped in meanwhile."""
        known = self.__dict__.setdefault("_fresh", {})
        if namespace not in known:
            known[namespace] = self.count(namespace) == 0
        return known[namespace]

    def not_fresh(self, namespace: str) -> None:
        self.__dict__.setdefault("_fresh", {})[namespace] = False

    def pages(self, namespace: str, cursor: Any = None, limit: int | None = None) -> Iterator[Page]:
        """Every page of ``namespace`` from ``cursor`` on."""
        while True:
            page = self.read(namespace, cursor, limit or self.page_size)
            if len(page.batch):
                yield page
            if page.cursor is None:
                return
            cursor = page.cursor


# -- URI helpers ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParsedUri:
    scheme: str
    host: str | None
    port: int | None
    path: str
    query: dict[str, str]
    user: str | None


def parse_uri(uri: str, env_hint: str) -> ParsedUri:
    """Split a connector URI, refusing a password in it: URIs end up in job state and logs."""
    parts = urlsplit(uri)
    if parts.password is not None:
        raise InvalidArgument(f"{redact(uri)}: a password in the URI is refused, because URIs are stored in job "
                              f"state and logs; set {env_hint} instead")
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    for key in ("password", "api_key", "apikey", "token"):
        if key in query:
            raise InvalidArgument(f"{redact(uri)}: a secret ({key}=) in the URI is refused; set {env_hint} instead")
    return ParsedUri(scheme=parts.scheme.lower(), host=parts.hostname, port=parts.port,
                     path=unquote(parts.path), query=query, user=parts.username)


def redact(uri: str) -> str:
    """The URI without any password, for messages."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def public_uri(uri: str) -> str:
    """The URI without any user information (a manifest's ``source.host`` holds no credentials)."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def require(module: str, engine: str) -> Any:
    """Import a client library, or one line naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise InvalidArgument(f"the {engine} connector needs the {module!r} package: pip install '{EXTRA}'") from None


def local_path(parsed: ParsedUri, what: str) -> str:
    """The absolute path of a local engine URI (``scheme:///ABS/PATH``)."""
    if parsed.host:
        raise InvalidArgument(f"{parsed.scheme}:///ABS/PATH names a local {what}; "
                              f"got a host ({parsed.host!r}): did you mean three slashes?")
    if not parsed.path or not os.path.isabs(parsed.path):
        raise InvalidArgument(f"{parsed.scheme}:///ABS/PATH needs an absolute path to the {what}")
    return parsed.path


def collection_for(template: str, namespace: str) -> str:
    """The collection of ``namespace`` under a ``{namespace}`` template ("default" for "")."""
    return template.replace(NAMESPACE_PLACEHOLDER, namespace or "default")


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower() and len(value) == 36
    except ValueError:
        return False


def point_uuid(namespace: str, record_id: str) -> str:
    """A UUID for engines that need one: the id itself when it is a UUID in the default
    namespace, else uuid5(NAMESPACE_URL, id) in the default namespace (what qdrant/migration
    writes, so spruce reads its collections) and uuid5(NAMESPACE_URL, namespace NUL id) in
    others (ids and namespaces never hold NUL, so two namespaces never collide)."""
    if not namespace:
        return record_id.lower() if is_uuid(record_id) else str(uuid.uuid5(uuid.NAMESPACE_URL, record_id))
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}\x00{record_id}"))
