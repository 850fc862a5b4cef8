"""Storage URIs to Stores: local folders, and s3://, gs:// and az:// through obstore."""

from __future__ import annotations

from typing import Any

from spruce.storage.base import ObjectInfo, Store, Writer
from spruce.storage.local import LocalStore
from spruce.storage.uri import StorageURI, parse_storage_uri, redact_uri

__all__ = [
    "LocalStore",
    "ObjectInfo",
    "ObjectStore",
    "StorageURI",
    "Store",
    "Writer",
    "describe_storage_error",
    "open_archive_store",
    "open_store",
    "parse_storage_uri",
    "redact_uri",
]


def open_store(uri: str | StorageURI, **options: Any) -> Store:
    """Open the store a URI names.

    Plain paths and file:// URIs are local folders (options are ignored for them).
    s3://, gs://, az:// and https://ACCOUNT.blob.core.windows.net/... open an ObjectStore;
    ``options`` are ObjectStoreOptions fields: endpoint_url, region, sse, sse_kms_key_id,
    max_retries, retry_timeout, timeout, connect_timeout, anonymous, part_size,
    max_concurrency, signed_url_expiry, access_key_id/secret_access_key, profile,
    account_name/account_key/sas_token/use_emulator, service_account_path ...
    Raises InvalidArgument for unusable URIs or unknown options, never echoing credentials.
    """
    location = uri if isinstance(uri, StorageURI) else parse_storage_uri(uri)
    if location.is_local:
        return LocalStore(location.path)
    from spruce.storage.object import ObjectStore

    return ObjectStore(location, **options)


def open_archive_store(uri: str, **options: Any) -> Store:
    """``open_store``, where a local ``ARCHIVE/manifest.json`` names its archive folder (users
    often point at the manifest)."""
    import os

    store = open_store(uri, **options)
    local = store.local_path("")
    if local and os.path.isfile(local) and os.path.basename(local) == "manifest.json":
        return open_store(os.path.dirname(local))
    return store


def __getattr__(name: str) -> Any:
    # Lazy, so importing spruce.storage for local folders does not load obstore.
    if name in ("ObjectStore", "describe_storage_error"):
        from spruce.storage import object as _object

        return getattr(_object, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

