"""The embedded index: durable SQLite store, exact snapshots, exact numpy search.

Loaded on first use (module ``__getattr__``), so ``spruce.engine.catalog``, the read-only view
that ``spruce index list`` and ``spruce stats`` use, imports neither numpy nor the engine.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DataDirLocked", "Engine", "Index", "Snapshot", "Transaction", "resolve_data_dir"]


def __getattr__(name: str) -> Any:
    if name in ("DataDirLocked", "Engine", "resolve_data_dir"):
        from spruce.engine import engine

        return getattr(engine, name)
    if name in ("Index", "Snapshot", "Transaction"):
        from spruce.engine import index

        return getattr(index, name)
    raise AttributeError(f"module 'spruce.engine' has no attribute {name!r}")
