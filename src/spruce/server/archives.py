"""``POST /archives/verify`` and ``POST /archives/inspect`` (spruce extensions): the server checks
or describes an archive in its own storage, so ``spruce --host URL verify PATH`` reads the same
place that ``spruce --host URL export IDX PATH`` wrote. The URI goes through the storage policy
like every export and import URI (roots, backups out of reach); the API key is checked as on
every route."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from spruce.server import versions
from spruce.server.responses import json_response

router = APIRouter(tags=["Archives (spruce extension)"])


class ArchiveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uri: str


def _store(request: Request, uri: str):  # type: ignore[no-untyped-def]
    from spruce.storage import open_archive_store

    return open_archive_store(request.app.state.storage.check(uri, what="uri"))


@router.post("/archives/verify", summary="Re-read every byte of an archive in the server's storage")
def verify(request: Request, body: ArchiveBody) -> Response:
    from spruce.archive import verify_archive

    return json_response(verify_archive(_store(request, body.uri)).to_dict(), versions.requested(request))


@router.post("/archives/inspect", summary="An archive's manifest")
def inspect(request: Request, body: ArchiveBody) -> Response:
    from spruce.archive import ArchiveReader

    return json_response(ArchiveReader(_store(request, body.uri)).manifest.to_dict(), versions.requested(request))
