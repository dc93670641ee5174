"""The router's Trade streams: ordered answers, bounded in flight, slow readers cut off.

The pattern of shard/streams.py, kept small: each request's work runs concurrently but is
answered in request order, at most ``inflight`` at a time (then the session stops reading
and HTTP/2 flow control pushes back on the client). Unsolicited reports share the ordered
output, bounded; a reader too slow to take them, or a write stalled past the write
timeout, ends the stream with RESOURCE_EXHAUSTED so memory stays bounded.

``run_session`` tells its clean-up whether the stream ended cleanly (the client
half-closed and every answer was written), which is the one case where
cancel-on-disconnect does not fire (gateway.proto, TradeStreamOptions); a client's cancel
looks the same at first, so such a session waits for it (api/stream_end.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import grpc

from api.stream_end import await_late_cancel
from api.stream_output import END, OVERFLOW, StreamOutput
from matching.v1 import gateway_pb2, orders_pb2

log = logging.getLogger(__name__)

UNSOLICITED_CAP = 10_000  # unsolicited messages waiting on one stream before it is cut off

Context = grpc.aio.ServicerContext[Any, Any]


class TradeSession:
    def __init__(self, inflight: int, write_timeout: float) -> None:
        self._out = StreamOutput(inflight, UNSOLICITED_CAP)
        self._write_timeout = write_timeout
        self.closed = False  # being cut off or ended: deliver() drops
        self.on_cut_off: Callable[[], object] | None = None
        self.accounts: list[str] = []
        self.cancel_on_disconnect = False

    async def enqueue(self, work: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Start one request's work once a slot is free; its answer keeps its place."""
        await self._out.put_answer(work)

    def deliver(self, results: list[orders_pb2.CommandResult]) -> None:
        """Unsolicited reports (called by the link's receiver: never blocks)."""
        if self.closed:
            return
        if not self._out.put_unsolicited(gateway_pb2.TradeResponse(results=results)):
            self.closed = True

    def finish(self) -> None:
        self._out.put_end()

    async def write_all(self, context: Context) -> bool:
        """Write answers in order until finish(); True if all were written."""
        while True:
            messages = await self._out.next_writes()
            if messages is END:
                return True
            if messages is OVERFLOW:
                self._cut_off(context, "unsolicited reports overflowed")
                return False
            for message in messages:
                if not await self._write(context, message):
                    return False

    async def _write(self, context: Context, message: Any) -> bool:
        write = asyncio.ensure_future(context.write(message))
        done, _ = await asyncio.wait({write}, timeout=self._write_timeout)
        if not done:
            self._cut_off(context, "write timed out")
            with contextlib.suppress(Exception):
                await write  # gRPC finishes it when the peer drains or the call ends
            return False
        return True

    def _cut_off(self, context: Context, why: str) -> None:
        self.closed = True
        self.cancel_pending()
        if self.on_cut_off is not None:
            self.on_cut_off()
        context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
        context.set_details(f"stream reader too slow: {why}")
        log.warning("cut off a slow Trade stream reader: %s", why)

    def cancel_pending(self) -> None:
        self._out.cancel_pending()


async def run_session(
    session: TradeSession,
    context: Context,
    read: Callable[[], Coroutine[Any, Any, None]],
    on_close: Callable[[bool], Awaitable[None]],
) -> None:
    """Read in one task, write in this one; ``on_close(clean)`` runs once, however it ends."""
    close_task: asyncio.Task[None] | None = None

    def close_once(clean: bool) -> asyncio.Task[None]:
        nonlocal close_task
        if close_task is None:
            close_task = asyncio.ensure_future(on_close(clean))
        return close_task

    session.on_cut_off = lambda: close_once(False)
    reader = asyncio.create_task(read())
    reader.add_done_callback(lambda _: session.finish())
    clean = False
    try:
        ended = await session.write_all(context) and _ended_cleanly(reader)
        if ended and session.cancel_on_disconnect:
            await await_late_cancel()  # raises if the "end" was the client's cancel
        clean = ended
    finally:
        session.closed = True
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        session.cancel_pending()
        await close_once(clean)
    if not reader.cancelled() and reader.exception() is not None:
        await _end_with_reader_error(context, reader.exception())


def _ended_cleanly(reader: asyncio.Task[None]) -> bool:
    return reader.done() and not reader.cancelled() and reader.exception() is None


async def _end_with_reader_error(context: Context, exc: BaseException | None) -> None:
    if isinstance(exc, grpc.aio.AbortError):
        return  # the reader already set the status (e.g. INVALID_ARGUMENT)
    log.warning("Trade stream ended by a reader error: %s", type(exc).__name__)
    context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
    context.set_details("malformed stream message")
