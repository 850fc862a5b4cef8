"""Export any index behind the Pinecone API into a spruce archive, and restore one into it.

Pinecone has no export. This connector is that export, through the official ``pinecone``
SDK (7.3, 9.x, 10.x: the differences are feature-detected), against Pinecone itself or
against another ``spruce serve``::

    from spruce.sources import pinecone as pc_source

    manifest = pc_source.export("docs", "s3://backups/docs-2025-03-01", api_key=key)
    summary = pc_source.restore("s3://backups/docs-2025-03-01", "docs-copy", api_key=key)

Export: every namespace (``list_namespaces``, else ``describe_index_stats``), every id
(``list_paginated``, page by page), fetched in batches of at most 1000 ids (fewer when the
URL or the expected response would be large) by a small thread pool, and written through
the same ArchiveWriter as local exports (jsonl.gz or parquet). Fetch responses are taken as
raw JSON from the SDK's own HTTP client and parsed by simdjson straight into a float32
matrix; whatever that does not take is decoded the general way (orjson, else the standard
library), which accepts it or names the record and field at fault. The proof is completeness:
at the end, each namespace's exported count must equal ``describe_index_stats``, and an id
that was listed but cannot be fetched fails the export, naming it; nothing is committed
otherwise. A remote index cannot be frozen, so the manifest says ``consistency: "live"``.
``verify_after`` lists every id again after the data is written and commits only if the
second listing matches the archive exactly.

Restore: batches that respect Pinecone's upsert limits (1000 records and 2 MB per request,
96 records for indexes with integrated embedding), upserted by a thread pool, each archive
file staged and checked against its checksum before any of it is sent (on SDK 9.x/10.x its
JSON lines go out as they are, in request bodies built around them). The index is
created when missing (serverless, cloud/region from the caller; dimension, metric and
vector type from the manifest). A Parquet archive in s3/gs/az storage can instead be
handed to the target's own bulk import (``start_import``) and followed to the end.

Throttling: every call goes through ``_Retrier``: 429, 408 and 5xx answers and transport
errors are retried with exponential backoff and full jitter, bounded, honouring
``Retry-After`` (from the SDK's ``retry_after``/``headers``, whatever the version). The
SDK's own retries (10.x: 3 per request, with Retry-After; 7.3: urllib3's, 5xx only) run
first; whatever they give up on reaches ``_Retrier``, and whatever ``_Retrier`` gives up on
fails the job with the last status, so nothing is hidden.

The API key is never logged, persisted in job state, or written to a manifest: it lives in
this process's memory (and, for resumed jobs, comes from ``PINECONE_API_KEY``).

Layout (each module imports only those above it in this list, and nothing above the jobs
layer): ``spruce.sources.retry`` (classification of failures, Retry-After, the backoff policy
shared with every connector), ``common`` (constants, errors, progress, ``_Retrier``),
``decode`` (fetch responses), ``sdk`` (the SDK of any version), ``chunks`` (upsert requests),
``exporter``, ``restorer``, ``jobs`` (the "remote-export"/"remote-import" job kinds). This
package re-exports all of it, so ``spruce.sources.pinecone.X`` works as it always has.
"""

from __future__ import annotations

from spruce.errors import ValidationError as ValidationError
from spruce.sources.pinecone.chunks import (
    _UPSERT_ENVELOPE as _UPSERT_ENVELOPE,
)
from spruce.sources.pinecone.chunks import (
    MAX_UPSERT_BYTES,
    MAX_UPSERT_RECORDS,
    MAX_UPSERT_RECORDS_TEXT,
    line_chunks,
    raw_line_chunks,
    upsert_chunks,
)
from spruce.sources.pinecone.chunks import _loads as _loads
from spruce.sources.pinecone.chunks import _request_size as _request_size
from spruce.sources.pinecone.chunks import _upsert_body as _upsert_body
from spruce.sources.pinecone.chunks import _verified_lines as _verified_lines
from spruce.sources.pinecone.common import (
    API_KEY_ENV,
    DEFAULT_CONTROL_HOST,
    FORMATS,
    IncompleteExport,
    IncompleteRestore,
    Progress,
)
from spruce.sources.pinecone.common import _check_common as _check_common
from spruce.sources.pinecone.common import _now as _now
from spruce.sources.pinecone.common import _Reporter as _Reporter
from spruce.sources.pinecone.common import _Retrier as _Retrier
from spruce.sources.pinecone.common import _take as _take
from spruce.sources.pinecone.decode import _fast_batch as _fast_batch
from spruce.sources.pinecone.decode import _fetched_map as _fetched_map
from spruce.sources.pinecone.decode import _Unparsable as _Unparsable
from spruce.sources.pinecone.exporter import _END as _END
from spruce.sources.pinecone.exporter import (
    FETCH_RESPONSE_BUDGET,
    FETCH_URL_BUDGET,
    LIST_AHEAD_PAGES,
    LIST_HEAD_START_SECONDS,
    STATS_SETTLE_SECONDS,
    export,
)
from spruce.sources.pinecone.exporter import _export as _export
from spruce.sources.pinecone.exporter import _Exporter as _Exporter
from spruce.sources.pinecone.exporter import _fetch_cost as _fetch_cost
from spruce.sources.pinecone.jobs import _job_key as _job_key
from spruce.sources.pinecone.jobs import _job_storage as _job_storage
from spruce.sources.pinecone.jobs import _JobReporter as _JobReporter
from spruce.sources.pinecone.jobs import (
    run_remote_export,
    run_remote_import,
    start_remote_export,
    start_remote_import,
)
from spruce.sources.pinecone.restorer import RestoreSummary, restore
from spruce.sources.pinecone.restorer import _finish as _finish
from spruce.sources.pinecone.restorer import _follow_import as _follow_import
from spruce.sources.pinecone.restorer import _import_uri as _import_uri
from spruce.sources.pinecone.restorer import _restore as _restore
from spruce.sources.pinecone.restorer import _upsert_all as _upsert_all
from spruce.sources.pinecone.restorer import _wait_ready as _wait_ready
from spruce.sources.pinecone.sdk import _URL_SAFE as _URL_SAFE
from spruce.sources.pinecone.sdk import LIST_PAGE, NAMESPACE_PAGE, IndexInfo
from spruce.sources.pinecone.sdk import _drop_none as _drop_none
from spruce.sources.pinecone.sdk import _fetch_query as _fetch_query
from spruce.sources.pinecone.sdk import _get as _get
from spruce.sources.pinecone.sdk import _major as _major
from spruce.sources.pinecone.sdk import _next_token as _next_token
from spruce.sources.pinecone.sdk import _Sdk as _Sdk
from spruce.sources.pinecone.sdk import _to_dict as _to_dict
from spruce.sources.retry import RemoteError, classify, describe_error

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_CONTROL_HOST",
    "FETCH_RESPONSE_BUDGET",
    "FETCH_URL_BUDGET",
    "FORMATS",
    "LIST_AHEAD_PAGES",
    "LIST_HEAD_START_SECONDS",
    "LIST_PAGE",
    "MAX_UPSERT_BYTES",
    "MAX_UPSERT_RECORDS",
    "MAX_UPSERT_RECORDS_TEXT",
    "NAMESPACE_PAGE",
    "STATS_SETTLE_SECONDS",
    "IncompleteExport",
    "IncompleteRestore",
    "IndexInfo",
    "Progress",
    "RemoteError",
    "RestoreSummary",
    "classify",
    "describe_error",
    "export",
    "line_chunks",
    "raw_line_chunks",
    "restore",
    "run_remote_export",
    "run_remote_import",
    "start_remote_export",
    "start_remote_import",
    "upsert_chunks",
]
