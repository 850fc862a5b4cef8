"""Prompt GIL hand-over while jobs run.

A job is a pipeline of threads: one decodes or encodes under the GIL while the others
gunzip, hash, read files and run SQLite with the GIL released. Each of those takes the GIL
back after every call, and CPython makes a thread that asks for it wait a whole switch
interval (5 ms by default) before a busy thread lets go. That starved the pipelines: a
gunzip thread beside one busy Python thread read 67 MB in 1.67 s instead of 0.16 s; at a
0.5 ms interval it took 0.20 s. So while any job runs the interval is at most 0.5 ms, and
it is put back when the last job ends (unless someone else changed it meanwhile).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Seconds; CPython keeps whole microseconds.
INTERVAL = 0.0005

_lock = threading.Lock()
_depth = 0
_saved: float | None = None


@contextmanager
def prompt_handoff() -> Iterator[None]:
    """Lower the switch interval for the duration (nestable, thread-safe)."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = sys.getswitchinterval()
            if _saved > INTERVAL:
                sys.setswitchinterval(INTERVAL)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                if _saved > INTERVAL and abs(sys.getswitchinterval() - INTERVAL) < 1e-7:
                    sys.setswitchinterval(_saved)
                _saved = None
