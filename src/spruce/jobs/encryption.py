"""Archive keys for jobs: in memory per job id, and how a job finds its key again.

A job that encrypts (export, backup) or decrypts (restore) is given an ArchiveKey. The key
itself stays in this process's memory (``JobManager.keys``, as storage secrets stay in
``JobManager.secrets``), never in the job's state. The state records only where the key comes
from (``options["encryption"]``): the key file's path, and/or that the passphrase is in
SPRUCE_ARCHIVE_PASSPHRASE. A process that did not start the job (a detached ``--no-wait``
worker, ``spruce serve`` resuming it) finds the key there again: the worker inherits the
environment, and a key file's path is not the key.
"""

from __future__ import annotations

from typing import Any

from spruce.archive.keys import KEY_FILE, PASSPHRASE, ArchiveKey
from spruce.errors import InvalidArgument


def encryption_options(key: ArchiveKey | None, *, writing: bool) -> dict[str, Any] | None:
    """What a job's state records of ``key`` (None without one): ``{"key_file": path}`` and/or
    ``{"passphrase": True}``. A writer takes exactly one kind (InvalidArgument for both)."""
    if key is None:
        return None
    if not isinstance(key, ArchiveKey):
        raise InvalidArgument(f"encryption_key must be a spruce.archive.ArchiveKey, got {type(key).__name__}")
    kinds = (key.writing_kind(),) if writing else key.kinds
    out: dict[str, Any] = {}
    if KEY_FILE in kinds:
        if not key.key_file:
            raise InvalidArgument("a job's key must come from a key file (ArchiveKey.from_file) or a passphrase, "
                                  "so that a resumed job finds it again")
        out["key_file"] = key.key_file
    if PASSPHRASE in kinds:
        out["passphrase"] = True
    return out


def job_key(ctx: Any) -> ArchiveKey | None:
    """The running job's key: the one it was given in this process, else found again from its
    state (ArchiveLocked when the passphrase is not in this process's environment)."""
    opts = ctx.state.options.get("encryption")
    if not opts:
        return None
    key = ctx.manager.keys.get(ctx.state.id)
    if key is None:
        key = ctx.manager.keys[ctx.state.id] = ArchiveKey.for_job(opts)
    return key
