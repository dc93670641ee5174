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
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import grpc

from matching.v1 import orders_pb2
from shard.edge import command_side, maker_expired_reports, maker_fill_reports
from shard.engine import Command, Report

log = logging.getLogger(__name__)

UNSOLICITED_CAP = 10_000  # maker reports waiting on one stream before it is cut off

Results = list[orders_pb2.CommandResult]
Wrap = Callable[[Results, Any], Any]  # builds the stream's response message


class StreamSession:
    def __init__(self, inflight: int, write_timeout: float) -> None:
        self._slots = asyncio.Semaphore(inflight)
        self._out: asyncio.Queue[asyncio.Future[Any] | Any] = asyncio.Queue()
        self._write_timeout = write_timeout
        self._overflow = False
        self.accounts: set[str] = set()
        self.cancel_on_disconnect: set[str] = set()

    async def enqueue(self, work: Awaitable[Any]) -> None:
        """Start processing one request; blocks while ``inflight`` are unanswered."""
        await self._slots.acquire()
        self._out.put_nowait(asyncio.ensure_future(work))

    def deliver(self, message: Any) -> None:
        """An unsolicited message (maker report); never blocks the committer."""
        if self._out.qsize() >= UNSOLICITED_CAP:
            self._overflow = True
            self._out.put_nowait(None)  # wake the writer so it can cut the stream off
            return
        self._out.put_nowait(message)

    def finish(self) -> None:
        self._out.put_nowait(_END)

    async def write_all(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Write responses in order until finish(); abort on a slow or overflowing reader."""
        while True:
            item = await self._out.get()
            if self._overflow:
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    "stream reader too slow: unsolicited reports overflowed",
                )
            if item is _END:
                return
            if isinstance(item, asyncio.Future):
                message = await item
                self._slots.release()
            else:
                message = item
            try:
                await asyncio.wait_for(context.write(message), self._write_timeout)
            except TimeoutError:
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, "stream reader too slow: write timed out"
                )

    def cancel_pending(self) -> None:
        while not self._out.empty():
            item = self._out.get_nowait()
            if isinstance(item, asyncio.Future):
                item.cancel()


_END = object()


class Subscribers:
    """Which streams want reports for which accounts (maker fills, STP expiries)."""

    def __init__(self) -> None:
        self._by_account: dict[str, set[tuple[StreamSession, Wrap]]] = defaultdict(set)

    def subscribe(self, session: StreamSession, wrap: Wrap, account: str) -> None:
        session.accounts.add(account)
        self._by_account[account].add((session, wrap))

    def unsubscribe_all(self, session: StreamSession) -> None:
        for account in session.accounts:
            entries = self._by_account.get(account)
            if entries is not None:
                entries.difference_update({e for e in entries if e[0] is session})
                if not entries:
                    del self._by_account[account]
        session.accounts.clear()

    def publish_maker_reports(self, done: list[tuple[Command, Any]]) -> None:
        """Pipeline after-commit hook: route maker-side reports to subscribed streams."""
        if not self._by_account:
            return
        now = time.time_ns()
        for cmd, outcome in done:
            if type(outcome) is not Report or not (outcome.fills or outcome.expired):
                continue
            side = command_side(cmd)
            for report in (
                *maker_fill_reports(
                    outcome,
                    taker_side=side,
                    transact_time_unix_nanos=now,
                    accounts=self._by_account,
                ),
                *maker_expired_reports(
                    outcome,
                    taker_side=side,
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
    """Read requests in one task, write answers in this one; clean up however it ends."""
    reader = asyncio.create_task(read())
    reader.add_done_callback(lambda _: session.finish())
    try:
        await session.write_all(context)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        session.cancel_pending()
        await on_close()
