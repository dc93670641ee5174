"""Symbols whose previous owner may still have reports of theirs on the way to this router.

When a symbol changes owner, the old owner's stream can still carry unsolicited reports of
it (a maker fill committed in its last batch, queued behind other traffic), while the new
owner answers at once: routed there straight away, a client could see its order cancelled
on the new owner before the fill that came first. So a symbol whose owner changed waits
(its commands are buffered, router/buffers.py) until the old owner's stream says it
released the symbol (ExecuteResponse.released, sent after everything about it), that
stream ends (what it still held is lost either way; a shard that left membership keeps its
stream while the link detaches), or ``wait_seconds`` pass from when the new owner is ACTIVE
(an owner that is frozen, or whose marker went out on a stream that broke since: logged).

Markers are counted per (shard, symbol) rather than matched by epoch: a standalone shard's
epoch is its own, and what matters is only whether one arrived since the router first saw
that shard own the symbol.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cluster.model import ClusterView
from router.link import ShardLink

log = logging.getLogger(__name__)


@dataclass
class _Wait:
    link: ShardLink
    stream: int  # the link's stream that was open: only it can still carry the reports
    timer: asyncio.TimerHandle | None = None  # started once the new owner is ACTIVE

    def open(self) -> bool:
        return self.link.receiving and self.link.streams == self.stream


class Handovers:
    def __init__(
        self,
        wait_seconds: float,
        link_of: Callable[[str], ShardLink | None],
        on_settled: Callable[[], None],
    ) -> None:
        self._wait_seconds = wait_seconds
        self._link_of = link_of  # a shard's link, a closing one included
        self._on_settled = on_settled  # buffers may drain
        self._owners: dict[str, tuple[str, int]] = {}  # symbol -> (owner, its markers then)
        self._released: dict[tuple[str, str], int] = {}  # (shard, symbol) -> markers seen
        self._waits: dict[str, _Wait] = {}
        # Told how each wait ended: "marker", "stream" (ended first) or "timeout" (metrics).
        self.on_end: Callable[[str], object] | None = None

    def waiting(self, symbol: str) -> bool:
        """Whether ``symbol`` still waits for its previous owner."""
        wait = self._waits.get(symbol) if self._waits else None
        if wait is None:
            return False
        if wait.open():
            return True
        self._end(symbol, "stream")  # that stream is gone, and whatever it still held
        asyncio.get_running_loop().call_soon(self._on_settled)  # not from inside a drain
        return False

    def observe(self, view: ClusterView) -> None:
        """Note owner changes of the table (called before the buffers drain)."""
        owners, waits = self._owners, self._waits
        for symbol, assignment in view.assignments.items():
            known = owners.get(symbol)
            shard_id = assignment.shard_id
            if known is None or known[0] != shard_id:
                if known is not None:
                    self._maybe_wait(symbol, *known)
                owners[symbol] = (shard_id, self._released.get((shard_id, symbol), 0))
            wait = waits.get(symbol) if waits else None
            if wait is not None and wait.timer is None and assignment.routable():
                loop = asyncio.get_running_loop()
                wait.timer = loop.call_later(self._wait_seconds, self._expire, symbol)
        for symbol in [s for s in owners if s not in view.assignments]:
            del owners[symbol]
            self._end(symbol)
        shards = set(view.shards)  # a shard that left: its markers can no longer matter
        for key in [k for k in self._released if k[0] not in shards]:
            del self._released[key]

    def released(self, link: ShardLink, symbols: Iterable[str]) -> None:
        """``link``'s shard says it released ``symbols``: nothing more of theirs follows."""
        settled = False
        for symbol in symbols:
            key = (link.shard_id, symbol)
            self._released[key] = self._released.get(key, 0) + 1
            wait = self._waits.get(symbol)
            if wait is not None and wait.link is link:
                self._end(symbol, "marker")
                settled = True
        if settled:
            self._on_settled()

    def _maybe_wait(self, symbol: str, old_owner: str, markers: int) -> None:
        self._end(symbol)  # a wait for an owner before that one is moot
        link = self._link_of(old_owner)
        if link is None or not link.receiving:
            return
        if self._released.get((old_owner, symbol), 0) > markers:
            return  # it came before the table said so
        self._waits[symbol] = _Wait(link, link.streams)

    def _expire(self, symbol: str) -> None:
        wait = self._waits.get(symbol)
        if wait is None:
            return
        ended = "timeout" if wait.open() else "stream"
        if ended == "timeout":
            log.warning(
                "shard %s did not confirm releasing %s within %.1fs; routing to its new owner",
                wait.link.shard_id, symbol, self._wait_seconds,
            )  # fmt: skip
        self._end(symbol, ended)
        self._on_settled()

    def _end(self, symbol: str, ended: str = "") -> None:
        """Stop waiting; ``ended`` says why (nothing: the wait was moot)."""
        wait = self._waits.pop(symbol, None)
        if wait is None:
            return
        if wait.timer is not None:
            wait.timer.cancel()
        if ended and self.on_end is not None:
            self.on_end(ended)
