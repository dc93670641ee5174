"""Mass cancels owed to clients gone with cancel-on-disconnect, kept per symbol (and the
epoch they were owed under) until the symbol serves on this shard again under that epoch
(then the pipeline runs them first in its next batch), or is no longer held under it
(then they are dropped, and logged: a later custody must not cancel orders placed since).

Owed: symbols reloading or moving when the client went, and cancels that could not run
(refused because the symbol was reloading or moving, or failed with their batch). A symbol
being handed over runs its owed cancels while it pauses (``handing_over``), so they commit
before the new owner loads it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from shard.engine import Command, MassCancel
from shard.ownership import Ownership, SymbolState

log = logging.getLogger(__name__)


class OwedCancels:
    def __init__(self, ownership: Ownership) -> None:
        self._ownership = ownership
        self._owed: dict[str, tuple[int, set[str]]] = {}  # symbol -> (epoch, accounts)
        self._handing_over: set[str] = set()
        self._taken: dict[str, int] = {}  # symbol -> times its cancels were taken to run

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._owed

    def symbols(self) -> list[str]:
        return sorted(self._owed)

    def owe(self, symbol: str, accounts: Iterable[str], epoch: int | None = None) -> None:
        """Owe under the epoch held now; ``epoch``: only if it is still the one held (a
        cancel failed with a batch written under it)."""
        owned = self._ownership.get(symbol)
        if owned is None or epoch not in (None, owned.epoch):
            log.warning("cancel on disconnect not run: not this shard's", extra={"symbol": symbol})
            return
        owed_under, owed = self._owed.get(symbol, (owned.epoch, set()))
        if owed_under != owned.epoch:  # owed under an earlier custody: not this one's
            self._drop(symbol)
            owed = set()
        owed.update(accounts)
        self._owed[symbol] = (owned.epoch, owed)

    def owe_commands(
        self, commands: Iterable[Command], epochs: dict[str, int] | None = None
    ) -> None:
        """``commands``: the MassCancels of an owing submission. ``epochs``: those of the
        failed batch it ran in; a cancel on a symbol absent from them did not run there
        (it was owed when refused)."""
        for cancel in commands:
            assert isinstance(cancel, MassCancel)
            if epochs is None:
                self.owe(cancel.symbol, (cancel.account,))
            elif cancel.symbol in epochs:
                self.owe(cancel.symbol, (cancel.account,), epochs[cancel.symbol])

    def handing_over(self, symbol: str, paused: bool) -> None:
        """While ``paused`` for a hand-over, ``symbol``'s cancels run though it is MOVING."""
        if paused:
            self._handing_over.add(symbol)
        else:
            self._handing_over.discard(symbol)

    def taken(self, symbol: str) -> int:
        return self._taken.get(symbol, 0)

    def due(self) -> bool:
        """Whether ``take_due`` has anything to run or drop now."""
        return any(self._status(symbol) != "wait" for symbol in self._owed)

    def take_due(self) -> list[MassCancel]:
        """The cancels to run now; those of symbols no longer held are dropped."""
        cancels: list[MassCancel] = []
        for symbol in list(self._owed):
            status = self._status(symbol)
            if status == "gone":
                self._drop(symbol)
            elif status == "run":
                _, accounts = self._owed.pop(symbol)
                self._taken[symbol] = self.taken(symbol) + 1
                cancels.extend(MassCancel(symbol, account) for account in sorted(accounts))
        return cancels

    def _status(self, symbol: str) -> str:
        epoch, _ = self._owed[symbol]
        owned = self._ownership.get(symbol)
        if owned is None or owned.epoch != epoch:
            return "gone"
        if owned.state is SymbolState.SERVING or (
            owned.state is SymbolState.MOVING and symbol in self._handing_over
        ):
            return "run"
        return "wait"

    def _drop(self, symbol: str) -> None:
        _, accounts = self._owed.pop(symbol)
        log.warning("cancel on disconnect for %d accounts not run: the symbol went to another"
                    " shard", len(accounts), extra={"symbol": symbol})  # fmt: skip
