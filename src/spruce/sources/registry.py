"""Connector URIs → connector classes, imported only when a URI needs one (their client
libraries are heavy and optional: ``pip install 'spruce[connectors]'``)."""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from spruce.sources.base import Connector

#: scheme → "module:Class" under spruce.sources
CONNECTORS: dict[str, str] = {
    "qdrant": "qdrant:QdrantConnector",
    "qdrants": "qdrant:QdrantConnector",
    "postgresql": "pgvector:PgvectorConnector",
    "postgres": "pgvector:PgvectorConnector",
    "chroma": "chroma:ChromaConnector",
    "milvus": "milvus:MilvusConnector",
    "lancedb": "lancedb:LanceDBConnector",
    "pinecone": "pinecone_end:PineconeConnector",
}


def scheme_of(spec: str) -> str | None:
    """The connector scheme of ``spec``, or None for a spruce index name or a storage URI."""
    if "://" not in spec:
        return None
    scheme = urlsplit(spec).scheme.lower()
    return scheme if scheme in CONNECTORS else None


def open_connector(uri: str) -> Connector:
    scheme = scheme_of(uri)
    if scheme is None:
        raise ValueError(f"not a connector URI: {uri}")
    module, cls = CONNECTORS[scheme].split(":")
    return getattr(importlib.import_module(f"spruce.sources.{module}"), cls)(uri)
