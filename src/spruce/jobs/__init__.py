"""Export and import jobs: validated up front, persisted, progress-reporting, resumable.

Bad options fail at once with InvalidArgument; only the work itself runs as a job, so a job
never fails for a reason that was knowable when it started. The API lives in
``spruce.jobs.api`` and is loaded on first use, so reading job files (``spruce.jobs.state``,
e.g. ``spruce jobs list``) does not import the engine.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ERROR_MODES", "FORMATS", "ON_CONFLICT", "SECRET_OPTIONS", "JobContext", "JobManager", "JobState", "JobStatus",
    "export_description", "import_description", "jobs_for", "split_storage_options", "start_export",
    "start_import",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from spruce.jobs import api

        return getattr(api, name)
    raise AttributeError(f"module 'spruce.jobs' has no attribute {name!r}")
