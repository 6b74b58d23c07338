"""A worker thread per transcoder, and a log throttle for per-frame failures.

FFmpeg work takes milliseconds per frame: on the event loop it would delay every other session.
PyAV releases the GIL while it encodes and decodes, so a thread is enough to use a second core.
The queue in front of the thread is bounded; when the transform falls behind, whatever is queued
is worth less than catching up, so it is dropped wholesale and the stream resumes at the next item
a decoder can start from (a keyframe).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")
CodecOut = TypeVar("CodecOut")

_ITEM = 0
_CALL = 1


class LogThrottle:
    """Logs the first of a recurring failure and then one in every ``every``.

    A corrupt stream fails on every frame; a line per frame would bury everything else.
    """

    __slots__ = ("_every", "_logger", "count")

    def __init__(self, logger: logging.Logger, every: int = 100) -> None:
        self._logger = logger
        self._every = max(1, every)
        self.count = 0

    def warning(self, msg: str, *args: object, exc_info: bool = False) -> None:
        self.count += 1
        if self.count == 1 or self.count % self._every == 0:
            self._logger.warning(
                "%s (%d so far)", msg % args if args else msg, self.count, exc_info=exc_info
            )


class Worker(Generic[In, Out]):
    """One daemon thread running a synchronous transform in order, so FFmpeg work stays off the
    event loop. Input queue is bounded; results are delivered on the event loop, in order.

    ``submit``, ``call`` and ``close`` are meant for the loop's thread (``deliver`` runs there
    too, which is what makes "no delivery after close() returned" hold without a lock).
    """

    def __init__(
        self,
        name: str,
        transform: Callable[[In], list[Out]],
        deliver: Callable[[list[Out]], None],
        *,
        loop: asyncio.AbstractEventLoop,
        max_pending: int = 64,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.name = name
        self._transform = transform
        self._deliver = deliver
        self._loop = loop
        self._max_pending = max_pending
        # Calls are few (a keyframe request, a reconfiguration); the bound only stops a runaway
        # caller from growing the queue without limit.
        self._max_calls = max(16, max_pending)
        self._on_close = on_close
        self._queue: deque[tuple[int, object]] = deque()
        self._items = 0
        self._calls = 0
        self._cond = threading.Condition()
        self._skipping = False  # after an overflow: until an item a decoder can start from
        self._stopping = False  # the thread should exit after its current item
        self._closed = False  # close() was called: no more submits, no more deliveries
        self._errors = LogThrottle(log)
        self._overflows = LogThrottle(log, every=10)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Items queued and not yet taken by the thread."""
        return self._items

    def submit(self, item: In, *, can_start: bool = True) -> bool:
        """Queue an item; False when it was dropped (overflow, or closed).

        On overflow everything queued is dropped, and so is every later item until one with
        ``can_start`` (a decoder can restart there): a transcoder fed a hole in the middle of a
        GOP would produce garbage until the next keyframe anyway.
        """
        with self._cond:
            if self._closed:
                return False
            if self._items >= self._max_pending:
                self.dropped += self._items
                self._queue = deque(e for e in self._queue if e[0] == _CALL)
                self._items = 0
                self._skipping = True
                self._overflows.warning(
                    "%s: fell behind, queue dropped until a keyframe", self.name
                )
            if self._skipping:
                if not can_start:
                    self.dropped += 1
                    return False
                self._skipping = False
            self._queue.append((_ITEM, item))
            self._items += 1
            self._cond.notify()
            return True

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the worker thread, in order with the items (never dropped on overflow;
        dropped with a warning past a generous bound, or after close)."""
        with self._cond:
            if self._closed:
                return
            if self._calls >= self._max_calls:
                log.warning("%s: %d calls pending, dropping one", self.name, self._calls)
                return
            self._queue.append((_CALL, fn))
            self._calls += 1
            self._cond.notify()

    def close(self, timeout: float = 2.0) -> None:
        """Stop after the current item, wait up to ``timeout`` for the thread, and deliver
        nothing more. ``on_close`` runs in the thread as it exits. ``timeout`` 0 does not
        wait (the event loop's choice: the thread finishes on its own)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._stopping = True
            self._queue.clear()
            self._items = self._calls = 0
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
            if timeout > 0 and self._thread.is_alive():
                log.warning("%s: worker still busy %.1f s after close", self.name, timeout)

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        return
                    kind, entry = self._queue.popleft()
                    if kind == _ITEM:
                        self._items -= 1
                    else:
                        self._calls -= 1
                if kind == _CALL:
                    self._run_call(entry)  # type: ignore[arg-type]
                else:
                    self._run_item(entry)  # type: ignore[arg-type]
        finally:
            if self._on_close is not None:
                try:
                    self._on_close()
                except Exception:
                    log.exception("%s: on_close failed", self.name)

    def _run_call(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            self._errors.warning("%s: call failed", self.name, exc_info=True)

    def _run_item(self, item: In) -> None:
        try:
            out = self._transform(item)
        except Exception:
            self._errors.warning("%s: transform failed, item skipped", self.name, exc_info=True)
            return
        if not out or self._stopping:
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver_on_loop, out)
        except RuntimeError:  # the loop is closed: nobody is left to deliver to
            with self._cond:
                self._stopping = True

    def _deliver_on_loop(self, out: list[Out]) -> None:
        if self._closed:  # scheduled before close(), run after it returned
            return
        try:
            self._deliver(out)
        except Exception:
            self._errors.warning("%s: deliver failed", self.name, exc_info=True)


class Codec(Protocol[CodecOut]):
    """What the transcoders share: ``feed`` takes one frame's arguments, ``close`` frees them."""

    def feed(self, *args: Any) -> list[CodecOut]: ...

    def close(self) -> None: ...


def codec_worker(
    name: str,
    codec: Codec[CodecOut],
    deliver: Callable[[list[CodecOut]], None],
    *,
    loop: asyncio.AbstractEventLoop,
    max_pending: int,
) -> Worker[tuple[Any, ...], CodecOut]:
    """A worker that calls ``codec.feed(*item)`` for each submitted tuple and closes the
    codec in its own thread when it stops."""
    return Worker(
        name,
        lambda item: codec.feed(*item),
        deliver,
        loop=loop,
        max_pending=max_pending,
        on_close=codec.close,
    )
