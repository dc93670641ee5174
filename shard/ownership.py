"""Which symbols this shard serves, under which epoch, and who owns the others.

Standalone, the owned set comes from configuration; in a cluster the assignment follower
(shard/cluster_member.py) drives the same methods (serve, mark_moving, release, hint).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class SymbolState(Enum):
    SERVING = "serving"
    RECOVERING = "recovering"  # reloading from Postgres after a failed commit
    MOVING = "moving"  # being handed to another shard: finishing in-flight batches


@dataclass
class OwnedSymbol:
    symbol: str
    epoch: int
    state: SymbolState


SERVED, RELEASED = "served", "released"  # the changes that are not a SymbolState's name


class Ownership:
    def __init__(self) -> None:
        self._owned: dict[str, OwnedSymbol] = {}
        self._known: set[str] = set()  # every symbol with reference data
        self._hints: dict[str, str] = {}  # symbol -> shard id believed to own it
        # Told of each change: SERVED (taken, or back after a reload or a rolled-back
        # move), "recovering", "moving", RELEASED (moved away or fenced off).
        self.listeners: list[Callable[[str], None]] = []
        # Told of each symbol released and the epoch it was served under (shard/service.py
        # tells the routers, after everything this shard sent about the symbol).
        self.on_release: list[Callable[[str, int], None]] = []

    def _changed(self, change: str) -> None:
        for listener in self.listeners:
            listener(change)

    def set_known(self, symbols: set[str]) -> None:
        self._known = set(symbols)

    def is_known(self, symbol: str) -> bool:
        return symbol in self._known or symbol in self._owned

    def get(self, symbol: str) -> OwnedSymbol | None:
        return self._owned.get(symbol)

    def serve(self, symbol: str, epoch: int) -> None:
        self._owned[symbol] = OwnedSymbol(symbol, epoch, SymbolState.SERVING)
        self._known.add(symbol)
        self._hints.pop(symbol, None)
        self._changed(SERVED)

    def mark_recovering(self, symbol: str) -> None:
        owned = self._owned.get(symbol)
        if owned is not None and owned.state is not SymbolState.RECOVERING:
            owned.state = SymbolState.RECOVERING
            self._changed(SymbolState.RECOVERING.value)

    def mark_moving(self, symbol: str) -> None:
        """Pause a serving symbol for a hand-over. A recovering one stays RECOVERING: its
        book may hold uncommitted effects until its reload ends, so no rolled-back move may
        put it back into service (only the reload does)."""
        owned = self._owned.get(symbol)
        if owned is not None and owned.state is SymbolState.SERVING:
            owned.state = SymbolState.MOVING
            self._changed(SymbolState.MOVING.value)

    def release(self, symbol: str, new_owner: str = "") -> None:
        owned = self._owned.pop(symbol, None)
        if owned is not None:
            self._changed(RELEASED)
            for listener in self.on_release:
                listener(symbol, owned.epoch)
        if new_owner:
            self._hints[symbol] = new_owner

    def set_hints(self, hints: dict[str, str]) -> None:
        """Owners of the symbols this shard does not own (from the assignment table)."""
        self._hints = {s: owner for s, owner in hints.items() if s not in self._owned}
        self._known.update(hints)

    def count(self, state: SymbolState) -> int:
        return sum(1 for owned in self._owned.values() if owned.state is state)

    def hint(self, symbol: str) -> str:
        return self._hints.get(symbol, "")

    def serving(self) -> list[str]:
        return sorted(s for s, o in self._owned.items() if o.state is SymbolState.SERVING)

    def owned(self) -> list[str]:
        return sorted(self._owned)
