"""Long-lived streams (router Execute streams, market-maker Trade streams).

Each stream has a session (the ordered, bounded write side and the stream's run are
api/stream_session.py, as for the router's Trade streams); maker reports reach it through
``Subscribers``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from api.stream_session import OrderedSession
from matching.v1 import orders_pb2
from shard.edge import maker_expired_reports, maker_fill_reports, report_to_pb
from shard.engine import Command, Report
from shard.system_cancels import HeldReports

_SYSTEM_CANCEL = orders_pb2.REPORT_KIND_SYSTEM_CANCEL
Results = list[orders_pb2.CommandResult]
Wrap = Callable[[Results, Any], Any]  # builds the stream's response message


class StreamSession(OrderedSession):
    def __init__(self, inflight: int, write_timeout: float) -> None:
        super().__init__(inflight, write_timeout)
        self.accounts: set[str] = set()
        self.cancel_on_disconnect: set[str] = set()
        self.router_id = ""  # an Execute stream's router ("" for a client's Trade stream)

    def cancels_on_disconnect(self) -> bool:
        return bool(self.cancel_on_disconnect)


class Subscribers:
    """Which streams want reports for which accounts (maker fills, STP expiries, system
    cancels: shard/system_cancels.py)."""

    def __init__(self, held: HeldReports | None = None) -> None:
        self._by_account: dict[str, set[tuple[StreamSession, Wrap]]] = defaultdict(set)
        self._held = HeldReports() if held is None else held

    def subscribe(self, session: StreamSession, wrap: Wrap, account: str) -> None:
        session.accounts.add(account)
        self._by_account[account].add((session, wrap))
        missed = self._held.take(account, session.router_id)
        if missed:
            session.deliver(wrap(missed, None))

    def accounts(self) -> set[str]:
        """The accounts some stream is subscribed to."""
        return set(self._by_account)

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

    def publish_system_cancels(self, reports: Iterable[Report]) -> None:
        """Pipeline hook: committed cancels of gone clients' orders, to the account's
        streams now and held for the routers that are not subscribed now."""
        now = time.time_ns()
        for report in reports:
            if not report.expired:
                continue
            pb = report_to_pb(report, transact_time_unix_nanos=now, kind=_SYSTEM_CANCEL)
            result = orders_pb2.CommandResult(correlation_id=0, report=pb)
            told = self._by_account.get(report.account, ())
            for session, wrap in told:
                session.deliver(wrap([result], None))
            self._held.hold(report.account, result, {session.router_id for session, _ in told})

    def _send(self, report: orders_pb2.ExecutionReport) -> None:
        result = orders_pb2.CommandResult(correlation_id=0, report=report)
        for session, wrap in self._by_account.get(report.account, ()):
            session.deliver(wrap([result], None))
