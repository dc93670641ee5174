"""Long-lived streams (router Execute streams, market-maker Trade streams).

Each stream has a session: requests are processed concurrently but answered in order, at
most ``stream_inflight`` at a time (then the session stops reading: HTTP/2 flow control
pushes back on the client). Unsolicited reports (fills of the stream's accounts as makers)
go through the same ordered output, bounded too; a reader too slow to take them, or one
whose write stalls past ``stream_write_timeout``, is cut off with RESOURCE_EXHAUSTED so
memory stays bounded and other streams are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import grpc

from api.stream_end import await_late_cancel
from api.stream_output import END, OVERFLOW, StreamOutput
from matching.v1 import orders_pb2
from shard.edge import maker_expired_reports, maker_fill_reports
from shard.engine import Command, Report

log = logging.getLogger(__name__)

UNSOLICITED_CAP = 10_000  # maker reports waiting on one stream before it is cut off

Results = list[orders_pb2.CommandResult]
Wrap = Callable[[Results, Any], Any]  # builds the stream's response message


class StreamSession:
    def __init__(self, inflight: int, write_timeout: float) -> None:
        self._out = StreamOutput(inflight, UNSOLICITED_CAP)
        self._write_timeout = write_timeout
        self.closed = False  # set when the stream is being cut off: deliver() drops
        self.on_cut_off: Callable[[], object] | None = None  # runs the stream's clean-up
        self.accounts: set[str] = set()
        self.cancel_on_disconnect: set[str] = set()
        # Set when the client half-closed cleanly and every answer was written: the one way a
        # stream ends without cancel-on-disconnect (matching.v1 TradeStreamOptions).
        self.clean_end = False

    async def enqueue(self, work: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Start one request's work once a slot is free (at most ``inflight`` unanswered)."""
        await self._out.put_answer(work)

    def deliver(self, message: Any) -> None:
        """An unsolicited message (maker report); never blocks the committer."""
        if self.closed:
            return
        if not self._out.put_unsolicited(message):  # wakes the writer, which ends the stream
            self.closed = True

    def finish(self) -> None:
        self._out.put_end()

    async def write_all(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Write responses in order until finish(); end the call on a slow reader.

        A reader too slow is cut off: the session closes and its queue is dropped at once,
        and the call ends with RESOURCE_EXHAUSTED, which the peer sees once it drains.
        """
        while True:
            messages = await self._out.next_writes()
            if messages is END:
                return
            if messages is OVERFLOW:
                self._cut_off(context, "unsolicited reports overflowed")
                return
            for message in messages:
                if not await self._write(context, message):
                    return

    async def _write(self, context: grpc.aio.ServicerContext[Any, Any], message: Any) -> bool:
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

    def _cut_off(self, context: grpc.aio.ServicerContext[Any, Any], why: str) -> None:
        self.closed = True
        self.cancel_pending()
        if self.on_cut_off is not None:
            self.on_cut_off()
        context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
        context.set_details(f"stream reader too slow: {why}")
        log.warning("cut off a slow stream reader: %s", why)

    def cancel_pending(self) -> None:
        self._out.cancel_pending()


class Subscribers:
    """Which streams want reports for which accounts (maker fills, STP expiries)."""

    def __init__(self) -> None:
        self._by_account: dict[str, set[tuple[StreamSession, Wrap]]] = defaultdict(set)

    def subscribe(self, session: StreamSession, wrap: Wrap, account: str) -> None:
        session.accounts.add(account)
        self._by_account[account].add((session, wrap))

    def unsubscribe(self, session: StreamSession, account: str) -> None:
        session.accounts.discard(account)
        entries = self._by_account.get(account)
        if entries is not None:
            entries.difference_update({e for e in entries if e[0] is session})
            if not entries:
                del self._by_account[account]

    def unsubscribe_all(self, session: StreamSession) -> None:
        for account in session.accounts:
            entries = self._by_account.get(account)
            if entries is not None:
                entries.difference_update({e for e in entries if e[0] is session})
                if not entries:
                    del self._by_account[account]
        session.accounts.clear()

    def publish_maker_reports(self, done: Iterator[tuple[Command, Any]]) -> None:
        """Pipeline after-commit hook: route maker-side reports to subscribed streams."""
        if not self._by_account:
            return
        now = time.time_ns()
        for _, outcome in done:
            if type(outcome) is not Report or not (outcome.fills or outcome.expired):
                continue
            for report in (
                *maker_fill_reports(
                    outcome,
                    transact_time_unix_nanos=now,
                    accounts=self._by_account,
                ),
                *maker_expired_reports(
                    outcome,
                    transact_time_unix_nanos=now,
                    accounts=self._by_account,
                ),
            ):
                self._send(report)

    def _send(self, report: orders_pb2.ExecutionReport) -> None:
        result = orders_pb2.CommandResult(correlation_id=0, report=report)
        for session, wrap in self._by_account.get(report.account, ()):
            session.deliver(wrap([result], None))


async def run_session(
    session: StreamSession,
    context: grpc.aio.ServicerContext[Any, Any],
    read: Callable[[], Coroutine[Any, Any, None]],
    on_close: Callable[[], Awaitable[None]],
) -> None:
    """Read requests in one task, write answers in this one; clean up however it ends.

    A reader that fails (unparseable message, abort) ends the stream with an error status,
    never with OK.
    """
    close_task: asyncio.Task[None] | None = None

    def close_once() -> asyncio.Task[None]:
        nonlocal close_task
        if close_task is None:
            close_task = asyncio.ensure_future(on_close())
        return close_task

    session.on_cut_off = close_once  # a cut-off stream is cleaned up at once
    reader = asyncio.create_task(read())
    reader.add_done_callback(lambda _: session.finish())
    try:
        await session.write_all(context)
        ended = (
            not session.closed and reader.done() and not reader.cancelled()
        ) and reader.exception() is None
        if ended and session.cancel_on_disconnect:
            await await_late_cancel()  # raises if the "end" was the client's cancel
        session.clean_end = ended
    finally:
        session.closed = True
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        session.cancel_pending()
        await close_once()
    if reader.done() and not reader.cancelled() and reader.exception() is not None:
        await _end_with_reader_error(context, reader.exception())


async def _end_with_reader_error(
    context: grpc.aio.ServicerContext[Any, Any], exc: BaseException | None
) -> None:
    if isinstance(exc, grpc.aio.AbortError):
        return  # the reader already set the status (e.g. INVALID_ARGUMENT)
    log.warning("stream ended by a reader error: %s", type(exc).__name__)
    context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
    context.set_details("malformed stream message")
