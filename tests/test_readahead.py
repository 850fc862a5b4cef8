"""read_ahead: the copy job's page prefetch keeps order, raises the source's error where it
happened, and stops reading when the consumer stops."""

from __future__ import annotations

import threading
import time

import pytest

from spruce.sources.readahead import read_ahead


def test_pages_arrive_in_order_and_all_of_them() -> None:
    assert list(read_ahead(iter(range(1000)), depth=3)) == list(range(1000))
    assert list(read_ahead(iter([]))) == []


def test_the_sources_error_is_raised_after_the_pages_before_it() -> None:
    def pages():
        yield 1
        yield 2
        raise ConnectionError("server went away")

    got = []
    with pytest.raises(ConnectionError, match="went away"):
        for p in read_ahead(pages()):
            got.append(p)
    assert got == [1, 2]


def test_a_consumer_that_stops_stops_the_reads() -> None:
    read = []
    closed = threading.Event()

    def pages():
        try:
            for i in range(10_000):
                read.append(i)
                yield i
        finally:
            closed.set()

    it = read_ahead(pages(), depth=2)
    assert next(it) == 0
    it.close()  # a cancelled job, a failed write
    assert closed.wait(5), "the source generator was not closed"
    n = len(read)
    time.sleep(0.3)
    assert len(read) == n and n <= 5, f"the worker kept reading: {n} pages"


def test_the_next_page_is_read_while_the_consumer_holds_this_one() -> None:
    second_read = threading.Event()

    def pages():
        yield 0
        second_read.set()
        yield 1

    it = read_ahead(pages())
    assert next(it) == 0
    # the consumer is still "writing" page 0, and page 1 is already being read
    assert second_read.wait(5)
    assert list(it) == [1]
