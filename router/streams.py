"""The router's Trade streams: ordered answers, bounded in flight, slow readers cut off.

The ordered, bounded write side is api/stream_session.py, as for the shard's streams.

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
from api.stream_session import Context, OrderedSession

log = logging.getLogger(__name__)


class TradeSession(OrderedSession):
    """A Trade stream's session; unsolicited messages are TradeResponses."""

    def __init__(self, inflight: int, write_timeout: float) -> None:
        super().__init__(inflight, write_timeout)
        self.accounts: list[str] = []
        self.cancel_on_disconnect = False


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
