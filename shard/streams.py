"""Long-lived streams (router Execute streams, market-maker Trade streams).

Each stream has a session (the ordered, bounded write side is api/stream_session.py, as
for the router's Trade streams); maker reports reach it through ``Subscribers``.
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
from api.stream_session import OrderedSession
from matching.v1 import orders_pb2
from shard.edge import maker_expired_reports, maker_fill_reports
from shard.engine import Command, Report

log = logging.getLogger(__name__)

Results = list[orders_pb2.CommandResult]
Wrap = Callable[[Results, Any], Any]  # builds the stream's response message


class StreamSession(OrderedSession):
    def __init__(self, inflight: int, write_timeout: float) -> None:
        super().__init__(inflight, write_timeout)
        self.accounts: set[str] = set()
        self.cancel_on_disconnect: set[str] = set()
        # Set when the client half-closed cleanly and every answer was written: the one way a
        # stream ends without cancel-on-disconnect (matching.v1 TradeStreamOptions).
        self.clean_end = False


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
