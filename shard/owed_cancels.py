"""Mass cancels owed to clients gone with cancel-on-disconnect, kept per symbol until the
symbol serves on this shard again (then the pipeline runs them first in its next batch) or
is no longer this shard's (then they are dropped, and logged).

Owed: symbols reloading or moving when the client went, and cancels that could not run
(refused because the symbol was reloading or moving, or failed with their batch).
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
        self._owed: dict[str, set[str]] = {}  # symbol -> accounts

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._owed

    def symbols(self) -> list[str]:
        return sorted(self._owed)

    def owe(self, symbol: str, accounts: Iterable[str]) -> None:
        self._owed.setdefault(symbol, set()).update(accounts)

    def owe_commands(self, commands: Iterable[Command]) -> None:
        """``commands``: the MassCancels of an owing submission."""
        for cancel in commands:
            assert isinstance(cancel, MassCancel)
            self.owe(cancel.symbol, (cancel.account,))

    def due(self) -> bool:
        """Whether ``take_due`` has anything to run or drop now."""
        for symbol in self._owed:
            owned = self._ownership.get(symbol)
            if owned is None or owned.state is SymbolState.SERVING:
                return True
        return False

    def take_due(self) -> list[MassCancel]:
        """The cancels of symbols serving here now; those of symbols gone are dropped.
        Symbols reloading or moving keep theirs."""
        cancels: list[MassCancel] = []
        for symbol in list(self._owed):
            owned = self._ownership.get(symbol)
            if owned is None:
                accounts = self._owed.pop(symbol)
                log.warning("cancel on disconnect for %d accounts on %s not run: the symbol"
                            " went to another shard", len(accounts), symbol)  # fmt: skip
            elif owned.state is SymbolState.SERVING:
                accounts = self._owed.pop(symbol)
                cancels.extend(MassCancel(symbol, account) for account in sorted(accounts))
        return cancels
