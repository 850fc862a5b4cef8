"""The embedded index: durable SQLite store, exact snapshots, exact numpy search."""

from spruce.engine.engine import DataDirLocked, Engine, resolve_data_dir
from spruce.engine.index import Index, Snapshot, Transaction

__all__ = ["DataDirLocked", "Engine", "Index", "Snapshot", "Transaction", "resolve_data_dir"]
