"""Reports of cancels the system made, held for the routers that have not had them yet.

A shard mass-cancels an account's orders when the stream that subscribed it with
cancel-on-disconnect ends (shard.proto). Most often that stream is a router's link that
broke while the router and its clients stayed up: the router reconnects after a backoff,
by which time the cancels have committed, so telling only the streams subscribed at commit
would leave those clients believing their orders rest. So each report
(REPORT_KIND_SYSTEM_CANCEL) is also held, for ``HOLD_SECONDS`` and at most ``HOLD_CAP`` in
all, and a stream that subscribes the account later gets the held reports its router has
not had. Streams that come straight to the shard share the router id "".
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from matching.v1 import orders_pb2

HOLD_SECONDS = 60.0  # well past a router's reconnect backoff
HOLD_CAP = 100_000  # reports (one per account and symbol) held in all; the oldest go first

CommandResult = orders_pb2.CommandResult

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Held:
    expires: float
    account: str
    result: CommandResult
    had: set[str] = field(default_factory=set)  # router ids that have it


def _key(result: CommandResult) -> tuple[str, str, int]:
    """One system cancel report per account, symbol and seq (one commit's mass cancel)."""
    report = result.report
    return report.account, report.symbol, report.seq


class HeldReports:
    def __init__(
        self,
        hold_seconds: float = HOLD_SECONDS,
        cap: int = HOLD_CAP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hold = hold_seconds
        self._cap = cap
        self._clock = clock
        self._oldest_first: deque[_Held] = deque()
        self._by_account: dict[str, deque[_Held]] = {}
        self.on_drop: Callable[[float], object] | None = None  # given how many the cap dropped

    def __len__(self) -> int:
        return len(self._oldest_first)

    def hold(self, account: str, result: CommandResult, had: set[str]) -> None:
        """Hold ``result`` for the routers not in ``had`` (those told at commit)."""
        held = _Held(self._clock() + self._hold, account, result, had)
        self._oldest_first.append(held)
        self._by_account.setdefault(account, deque()).append(held)
        self._expire()

    def take(self, account: str, router_id: str) -> list[CommandResult]:
        """The held reports of ``account`` that ``router_id`` has not had, oldest first;
        from now on it has them."""
        self._expire()
        taken = []
        for held in self._by_account.get(account, ()):
            if router_id not in held.had:
                held.had.add(router_id)
                taken.append(held.result)
        return taken

    def give_back(self, results: list[CommandResult], router_id: str) -> None:
        """``router_id`` did not get ``results`` after all (its stream was cut off, or ended
        with them unwritten). Matched by content: the streams carry copies."""
        given = {_key(result) for result in results}
        for held in self._oldest_first:
            if _key(held.result) in given:
                held.had.discard(router_id)

    def _expire(self) -> None:
        now = self._clock()
        queue = self._oldest_first
        over = len(queue) - self._cap
        if over > 0:
            log.warning("system cancels held past the cap: %d dropped, oldest first", over)
            if self.on_drop is not None:
                self.on_drop(over)
        while queue and (len(queue) > self._cap or queue[0].expires <= now):
            gone = queue.popleft()
            of_account = self._by_account[gone.account]
            of_account.popleft()  # held in the same order: the account's oldest is this one
            if not of_account:
                del self._by_account[gone.account]
