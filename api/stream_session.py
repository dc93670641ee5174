"""The write side of a long-lived stream, shared by the router's Trade sessions and the
shard's Trade and Execute sessions, and ``run_session``, which runs one such stream.

Each request's work runs concurrently but is answered in request order, at most
``inflight`` at a time (then the session stops reading: HTTP/2 flow control pushes back on
the client). Unsolicited messages (maker reports) go through the same ordered output
(api/stream_output.py), bounded too; a reader too slow to take them, or one whose write
stalls past ``write_timeout``, is cut off with RESOURCE_EXHAUSTED, so memory stays bounded
and other streams are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import grpc

from api.stream_end import await_late_cancel
from api.stream_output import END, OVERFLOW, StreamOutput

log = logging.getLogger(__name__)

UNSOLICITED_CAP = 10_000  # unsolicited reports waiting on one stream before it is cut off

Context = grpc.aio.ServicerContext[Any, Any]


class OrderedSession:
    def __init__(self, inflight: int, write_timeout: float) -> None:
        self._out = StreamOutput(inflight, UNSOLICITED_CAP)
        self._write_timeout = write_timeout
        self.closed = False  # being cut off or ended: deliver() drops
        self._writing: deque[Any] = deque()  # taken from the output, not written yet
        self.unwritten: list[Any] = []  # messages the close dropped unwritten, in order
        self.on_cut_off: Callable[[], object] | None = None  # runs the stream's clean-up

    def cancels_on_disconnect(self) -> bool:
        """Whether some account on this stream asked for cancel-on-disconnect."""
        return False

    async def enqueue(self, work: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Start one request's work once a slot is free; its answer keeps its place."""
        await self._out.put_answer(work)

    def deliver(self, message: Any) -> None:
        """An unsolicited message (with ``results``); never blocks its caller."""
        if self.closed:
            return
        if not self._out.put_unsolicited(message):  # wakes the writer, which ends the stream
            self.closed = True

    def finish(self) -> None:
        self._out.put_end()

    async def write_all(self, context: Context) -> bool:
        """Write in order until finish(); True if everything was written, False if the
        reader was cut off (the call then ends with RESOURCE_EXHAUSTED once it drains)."""
        while True:
            messages = await self._out.next_writes()
            if messages is END and not self.closed:
                return True
            if messages is END or messages is OVERFLOW:  # END: one overflowed behind it
                self._cut_off(context, "unsolicited reports overflowed")
                return False
            writing = self._writing
            writing.extend(messages)
            while writing:
                if not await self._write(context, writing[0]):
                    return False
                writing.popleft()

    async def _write(self, context: Context, message: Any) -> bool:
        write = asyncio.ensure_future(context.write(message))
        done, _ = await asyncio.wait({write}, timeout=self._write_timeout)
        if not done:
            # Release everything now, but let gRPC finish the stalled write (it ends when
            # the peer drains or the call's deadline passes): only then can the status go.
            self._cut_off(context, "write timed out")
            with contextlib.suppress(Exception):
                await write
            return False
        return True

    def _cut_off(self, context: Context, why: str) -> None:
        self.close()
        if self.on_cut_off is not None:
            self.on_cut_off()
        context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
        context.set_details(f"stream reader too slow: {why}")
        log.warning("cut off a slow stream reader: %s", why)

    def close(self) -> None:
        """Deliver nothing more, start no more requests, cancel those being worked on."""
        self.closed = True
        self.unwritten.extend(self._writing)  # a stalled one among them may still go out
        self._writing.clear()
        self.unwritten.extend(self._out.close())


async def run_session(
    session: OrderedSession,
    context: Context,
    read: Callable[[], Coroutine[Any, Any, None]],
    on_close: Callable[[bool], Awaitable[None]],
) -> None:
    """Read requests in one task, write answers in this one; ``on_close(clean)`` runs once,
    however the stream ends.

    ``clean`` is True only if the client half-closed and every answer was written: the one
    ending cancel-on-disconnect spares (matching.v1 TradeStreamOptions). A client's cancel
    looks the same at first, so such a session waits for it (api/stream_end.py). A reader
    that fails (unparseable message, abort) ends the stream with an error status, never OK.
    """
    close_task: asyncio.Task[None] | None = None

    def close_once(clean: bool) -> asyncio.Task[None]:
        nonlocal close_task
        if close_task is None:
            close_task = asyncio.ensure_future(on_close(clean))
        return close_task

    reader = asyncio.create_task(read())
    reader.add_done_callback(lambda _: session.finish())

    def cut_off() -> None:
        # Cleaned up at once, while the stalled write lingers; and read no more: a request
        # read after the clean-up began would trade after cancel-on-disconnect ran.
        reader.cancel()
        close_once(False)

    session.on_cut_off = cut_off
    clean = False
    try:
        ended = await session.write_all(context) and _ended_cleanly(reader)
        if ended and session.cancels_on_disconnect():
            await await_late_cancel()  # raises if the "end" was the client's cancel
        clean = ended
    finally:
        session.close()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        await close_once(clean)
    if not reader.cancelled() and reader.exception() is not None:
        await _end_with_reader_error(context, reader.exception())


def _ended_cleanly(reader: asyncio.Task[None]) -> bool:
    return reader.done() and not reader.cancelled() and reader.exception() is None


async def _end_with_reader_error(context: Context, exc: BaseException | None) -> None:
    if isinstance(exc, grpc.aio.AbortError):
        return  # the reader already set the status (e.g. INVALID_ARGUMENT)
    log.warning("stream ended by a reader error: %s", type(exc).__name__)
    context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
    context.set_details("malformed stream message")
