"""Read the next pages while the current one is written.

A copy spends its time in two places that can overlap: waiting on the source (a database
producing rows, an archive being inflated) and writing to the target. Both mostly run outside the
GIL (sockets, zlib, Arrow, SQLite), so reading one or two pages ahead in a thread nearly halves a
copy's wall time without changing what it does: pages still reach the writer one at a time and in
order, and the job still checkpoints a page's cursor only after that page is written.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def read_ahead(pages: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield what ``pages`` yields, produced up to ``depth`` items ahead in a worker thread.

    An exception in the producer is raised here, at the point of the page it stopped on. When the
    consumer stops early (cancel, a failed write), the worker stops after at most one more page:
    it never keeps reading a source nobody is copying."""
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for page in pages:
                if not put(page):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Raised(exc))
        finally:
            close = getattr(pages, "close", None)
            if close is not None and stop.is_set():
                close()

    worker = threading.Thread(target=work, name="spruce-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()
