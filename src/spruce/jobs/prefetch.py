"""Reading ahead in a thread, for jobs whose reading and writing can overlap."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any


class Prefetch:
    """Iterates ``make()`` in a thread, up to ``depth`` items ahead: Arrow decoding, gunzip,
    hashing and SQLite release the GIL, so reading overlaps encoding or writing. An exception
    comes out where its item would have; ``close()`` stops the thread (the iterator is closed
    in the thread that runs it)."""

    _END = object()

    def __init__(self, make: Callable[[], Iterator[Any]], depth: int = 2, name: str = "spruce-prefetch") -> None:
        self._queue: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        #: set once the thread has produced its last item (the queue may still hold some)
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(make,), name=name, daemon=True)
        self._thread.start()

    def _put(self, item: tuple[bool, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, make: Callable[[], Iterator[Any]]) -> None:
        it: Any = None
        try:
            it = make()
            for item in it:
                if not self._put((True, item)):
                    return
            self._put((True, self._END))
        except BaseException as exc:
            self._put((False, exc))
        finally:
            self.finished.set()
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[Any]:
        while True:
            ok, item = self._queue.get()
            if not ok:
                raise item
            if item is self._END:
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
