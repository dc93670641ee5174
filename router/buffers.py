"""Per-symbol buffers for commands whose symbol has no reachable ACTIVE owner right now.

A symbol MOVING or LOADING (DESIGN section 5), or whose owner's link is down, keeps its
commands here in arrival order (of the callers' requests at the router, so a command sent
before the move and refused by the old owner is retried before those that waited), bounded
by count and time. Whenever the table or a link
changes, ``drain`` hands each buffer whose symbol became routable to its owner's link, in
order. Past either bound a command is answered UNAVAILABLE / SYMBOL_MOVING (retryable,
not executed).

A buffer is not drained while commands of its symbol sent earlier (to the old owner) have
not been answered and, if refused, put back in the buffer for their one retry
(``unsettled``/``settled``): drained before that, later commands would reach the new owner
ahead of them. For the same reason a symbol whose owner changed with no MOVING state (a
failover) is buffered while commands sent to its previous owner are unanswered
(``must_wait``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable

from api.status import command_error
from matching.v1 import orders_pb2, types_pb2
from router.errors import LinkClosed, LinkOverloaded
from router.link import Part, ShardLink

_RC = types_pb2.RejectCode

# What a route lookup gives: a ready link, "wait" (buffer), or "unknown" (no such symbol).
WAIT = "wait"
UNKNOWN = "unknown"
Route = ShardLink | str


def moving_error(symbol: str, why: str) -> orders_pb2.CommandError:
    return command_error(_RC.REJECT_CODE_SYMBOL_MOVING, why, symbol=symbol)


def overloaded_error(symbol: str) -> orders_pb2.CommandError:
    return command_error(
        _RC.REJECT_CODE_OVERLOADED, "router queue to the shard is full; back off", symbol=symbol
    )


def unknown_symbol_error(symbol: str) -> orders_pb2.CommandError:
    return command_error(_RC.REJECT_CODE_UNKNOWN_SYMBOL, f"unknown symbol {symbol}", symbol=symbol)


class SymbolBuffers:
    def __init__(
        self, max_commands: int, max_seconds: float, route: Callable[[str], Route]
    ) -> None:
        self._max_commands = max_commands
        self._max_seconds = max_seconds
        self._route = route
        self._parts: dict[str, deque[Part]] = {}
        self._counts: dict[str, int] = {}
        self._unsettled: dict[str, int] = {}  # requests with commands of the symbol sent
        self._sent_to: dict[str, ShardLink] = {}  # where those went (one link: must_wait)

    def unsettled(self, symbols: Iterable[str], link: ShardLink) -> None:
        """A request sent commands of ``symbols`` to ``link``: hold their buffers until it
        is ``settled`` (answered, and any retry buffered or sent)."""
        unsettled, sent_to = self._unsettled, self._sent_to
        for symbol in symbols:
            unsettled[symbol] = unsettled.get(symbol, 0) + 1
            sent_to[symbol] = link

    def settled(self, symbols: Iterable[str]) -> None:
        unsettled, released = self._unsettled, False
        for symbol in symbols:
            left = unsettled[symbol] - 1
            if left:
                unsettled[symbol] = left
            else:
                del unsettled[symbol]
                del self._sent_to[symbol]
                released = released or symbol in self._parts
        if released:
            self.drain()

    def must_wait(self, symbol: str, route: Route) -> bool:
        """True while commands of ``symbol`` wait here, or are unanswered by a shard other
        than ``route``'s: later ones must queue behind them. (Only a drain sends a symbol to
        a new link, once nothing is unsettled: unsettled commands share one link.)"""
        return symbol in self._parts or (
            symbol in self._unsettled and self._sent_to[symbol] is not route
        )

    def count(self, symbol: str) -> int:
        return self._counts.get(symbol, 0)

    def total(self) -> int:
        """Commands buffered, all symbols."""
        return sum(self._counts.values())

    def add(self, symbol: str, part: Part) -> None:
        count = self._counts.get(symbol, 0) + len(part.bodies)
        if count > self._max_commands:
            part.fail(moving_error(symbol, f"{symbol} is moving and its buffer is full"),
                      final=True)  # fmt: skip
            return
        parts = self._parts.setdefault(symbol, deque())
        if parts and parts[-1].seq > part.seq:
            # A retried command (refused by a shard that was letting the symbol go) arrived
            # before everything buffered since: it goes in front of them, in arrival order.
            parts.insert(next(i for i, p in enumerate(parts) if p.seq > part.seq), part)
        else:
            parts.append(part)
        self._counts[symbol] = count
        loop = asyncio.get_running_loop()
        wait = part.max_wait or self._max_seconds
        part.timer = loop.call_later(wait, self._expire, symbol, part)

    def _expire(self, symbol: str, part: Part) -> None:
        parts = self._parts.get(symbol)
        if parts is None or part not in parts:
            return
        parts.remove(part)
        self._forget(symbol, parts, len(part.bodies))
        part.fail(moving_error(symbol, f"{symbol} had no reachable owner in time"), final=True)

    def _forget(self, symbol: str, parts: deque[Part], count: int) -> None:
        self._counts[symbol] -= count
        if not parts:
            del self._parts[symbol]
            del self._counts[symbol]

    def drain(self) -> None:
        """Send every buffer whose symbol is routable now, in arrival order."""
        for symbol in list(self._parts):
            if symbol in self._unsettled:
                continue
            route = self._route(symbol)
            if route == WAIT:
                continue
            parts = self._parts.pop(symbol)
            del self._counts[symbol]
            for part in parts:
                if part.timer is not None:
                    part.timer.cancel()
                if not part.future.done():
                    if part.on_send is not None and isinstance(route, ShardLink):
                        part.on_send(route)  # unsettled at its new owner, like a direct send
                    send(part, route, symbol)

    def fail_all(self, why: str) -> None:
        """Router stopping: answer everything still waiting."""
        for symbol, parts in self._parts.items():
            for part in parts:
                if part.timer is not None:
                    part.timer.cancel()
                part.fail(moving_error(symbol, why), final=True)
        self._parts.clear()
        self._counts.clear()


def send(part: Part, route: Route, symbol: str) -> None:
    """Hand ``part`` to a link, or answer it when that cannot be done."""
    if isinstance(route, ShardLink):
        try:
            route.submit(part)
        except LinkOverloaded:
            part.fail(overloaded_error(symbol), final=True)
        except LinkClosed:  # cannot happen for a route found ready in this same step
            part.fail(moving_error(symbol, "owner link closed"), final=True)
    elif route == UNKNOWN:
        part.fail(unknown_symbol_error(symbol), final=True)
