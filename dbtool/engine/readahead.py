"""Run an iterator in a background thread, a few items ahead of its consumer.

Loading a file alternates between splitting (Python, one core) and waiting for the server (a
socket, no GIL held). Splitting the next batch while the server runs the current one takes the
splitter's time off the total: on a seed of 100,000 INSERTs that is most of the gap between
dbtool and sending the whole file as one query.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()
_POLL_SECONDS = 0.1


@contextlib.contextmanager
def read_ahead(items: Iterable[T], depth: int = 3) -> Iterator[Iterator[T]]:
    """An iterator over ``items`` produced in a thread; errors raised there come out here.

    Leaving the block early (an error, Ctrl-C) stops the thread at its next item, so at most
    ``depth`` items are ever held and no thread outlives the load (unless blocked reading a pipe,
    which ends when the pipe does: the thread is a daemon).
    """
    handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if not _put(handoff, item, stop):
                    return
            _put(handoff, _DONE, stop)
        except BaseException as error:  # handed to the consumer, which re-raises it
            _put(handoff, _Failure(error), stop)

    thread = threading.Thread(target=produce, name="dbtool-read-ahead", daemon=True)
    thread.start()
    try:
        yield _consume(handoff)
    finally:
        stop.set()
        thread.join(timeout=1)


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _put(handoff: queue.Queue[object], item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            handoff.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def _consume(handoff: queue.Queue[object]) -> Iterator[T]:
    while True:
        item = handoff.get()
        if item is _DONE:
            return
        if isinstance(item, _Failure):
            raise item.error
        yield item  # type: ignore[misc]
