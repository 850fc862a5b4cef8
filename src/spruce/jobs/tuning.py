"""Interpreter settings for the duration of jobs: prompt GIL hand-over, rarer GC passes.

A job is a pipeline of threads: one decodes or encodes under the GIL while the others
gunzip, hash, read files and run SQLite with the GIL released. Each of those takes the GIL
back after every call, and CPython makes a thread that asks for it wait a whole switch
interval (5 ms by default) before a busy thread lets go. That starved the pipelines: a
gunzip thread beside one busy Python thread read 67 MB in 1.67 s instead of 0.16 s; at a
0.5 ms interval it took 0.20 s.

The decoding thread also allocates a few objects per record (ids, metadata dicts), none in
cycles, and CPython's collector ran a pass every 700 allocations, holding the GIL
throughout: 7-15% of a restore's or a Parquet export's time on the bench data. Collecting
the young generation every 50,000 allocations instead costs nothing measurable in memory
(cycles are still collected, later).

So while any job runs the switch interval is at most 0.5 ms and the collector's first
threshold at least 50,000; both are put back when the last job ends, unless someone else
changed them meanwhile.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Seconds; CPython keeps whole microseconds.
INTERVAL = 0.0005
#: Allocations between young-generation collections (CPython's default is 700).
GC_THRESHOLD0 = 50_000

_lock = threading.Lock()
_depth = 0
_saved_interval: float | None = None
_saved_gc: tuple[int, ...] | None = None


@contextmanager
def tuned_for_jobs() -> Iterator[None]:
    """Apply the job settings for the duration (nestable, thread-safe)."""
    global _depth, _saved_interval, _saved_gc
    with _lock:
        if _depth == 0:
            _saved_interval = sys.getswitchinterval()
            if _saved_interval > INTERVAL:
                sys.setswitchinterval(INTERVAL)
            _saved_gc = gc.get_threshold()
            if 0 < _saved_gc[0] < GC_THRESHOLD0:  # 0: the caller turned automatic collection off
                gc.set_threshold(GC_THRESHOLD0, *_saved_gc[1:])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _restore()


def _restore() -> None:
    global _saved_interval, _saved_gc
    if _saved_interval is not None and _saved_interval > INTERVAL and \
            abs(sys.getswitchinterval() - INTERVAL) < 1e-7:
        sys.setswitchinterval(_saved_interval)
    if _saved_gc is not None and 0 < _saved_gc[0] < GC_THRESHOLD0 and \
            gc.get_threshold() == (GC_THRESHOLD0, *_saved_gc[1:]):
        gc.set_threshold(*_saved_gc)
    _saved_interval = _saved_gc = None
