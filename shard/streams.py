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
# Bytes of reports per unsolicited message: far below the 4 MiB a gRPC client takes by
# default, however many reports a batch (or a resubscription's held ones) has for a stream.
MESSAGE_BYTES = 1 << 20


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
        self.held = HeldReports() if held is None else held  # read by the metrics

    def subscribe(self, session: StreamSession, wrap: Wrap, accounts: Iterable[str]) -> None:
        """Subscribe ``session`` to ``accounts``; the system cancels held for them that its
        router has not had come first, in one message."""
        missed: Results = []
        for account in accounts:
            session.accounts.add(account)
            self._by_account[account].add((session, wrap))
            missed.extend(self.held.take(account, session.router_id))
        if missed:
            self._send_held(session, wrap, missed)

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
        """The stream ended: forget it. The system cancels it never wrote are held for its
        router again, and go at once to a stream of that router already subscribed again
        (one that reconnected before this end was noticed)."""
        for account in session.accounts:
            entries = self._by_account.get(account)
            if entries is not None:
                entries.difference_update({e for e in entries if e[0] is session})
                if not entries:
                    del self._by_account[account]
        session.accounts.clear()
        unwritten = [
            result
            for message in session.unwritten
            for result in message.results
            if result.report.kind == _SYSTEM_CANCEL
        ]
        session.unwritten.clear()
        if not unwritten:
            return
        router_id = session.router_id
        self.held.give_back(unwritten, router_id)
        for account in {result.report.account for result in unwritten}:
            for other, wrap in list(self._by_account.get(account, ())):
                if other.router_id == router_id and not other.closed:
                    self._send_held(other, wrap, self.held.take(account, router_id))
                    break  # the router has them now

    def _send_held(self, session: StreamSession, wrap: Wrap, results: Results) -> None:
        """Send held reports just taken for the session's router, in bounded messages; if
        the session overflowed meanwhile, they stay held for its router's next subscribe."""
        for message in split(results):
            session.deliver(wrap(message, None))
        if session.closed:
            self.held.give_back(results, session.router_id)

    def publish(self, done: Iterator[tuple[Command, Any, bool]]) -> None:
        """Pipeline after-commit hook: maker-side reports (fills, STP expiries) and system
        cancels, to the streams of their accounts in commit order, one message per stream.
        System cancels are also held for the routers not told now."""
        by_account = self._by_account
        now = time.time_ns()
        out: dict[StreamSession, tuple[Wrap, Results]] = {}
        told: list[tuple[orders_pb2.CommandResult, list[StreamSession]]] = []
        for _, outcome, system in done:
            if type(outcome) is not Report or not (outcome.fills or outcome.expired):
                continue
            if system:
                pb = report_to_pb(outcome, transact_time_unix_nanos=now, kind=_SYSTEM_CANCEL)
                result = orders_pb2.CommandResult(correlation_id=0, report=pb)
                told.append((result, self._add(result, out)))
            elif by_account:
                for report in (
                    *maker_fill_reports(outcome, transact_time_unix_nanos=now,
                                        accounts=by_account),
                    *maker_expired_reports(outcome, transact_time_unix_nanos=now,
                                           accounts=by_account),
                ):  # fmt: skip
                    self._add(orders_pb2.CommandResult(correlation_id=0, report=report), out)
        for session, (wrap, results) in out.items():
            for message in split(results):
                session.deliver(wrap(message, None))
        for result, sessions in told:  # a stream that overflowed was not told
            had = {session.router_id for session in sessions if not session.closed}
            self.held.hold(result.report.account, result, had)

    def _add(
        self, result: orders_pb2.CommandResult, out: dict[StreamSession, tuple[Wrap, Results]]
    ) -> list[StreamSession]:
        """Add ``result`` to the message of each stream of its account; those streams."""
        sessions = []
        for session, wrap in self._by_account.get(result.report.account, ()):
            sessions.append(session)
            pending = out.get(session)
            if pending is None:
                out[session] = (wrap, [result])
            else:
                pending[1].append(result)
        return sessions


def split(results: Results, budget: int = MESSAGE_BYTES) -> Iterator[Results]:
    """``results`` in order, in consecutive messages of at most ``budget`` bytes (a larger
    result alone)."""
    chunk: Results = []
    size = 0
    for result in results:
        n = result.ByteSize()
        if chunk and size + n > budget:
            yield chunk
            chunk, size = [], 0
        chunk.append(result)
        size += n
    if chunk:
        yield chunk
