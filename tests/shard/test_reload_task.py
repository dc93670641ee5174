"""The node's reload task: each attempt reloads the ownership recovering at that moment."""

from __future__ import annotations

import asyncio

import pytest

from persistence.errors import PersistenceError
from shard import server
from shard.ownership import SymbolState
from tests.shard.support import config

SYMBOL = "BTC-USDT"


async def test_a_reload_backing_off_reloads_the_symbol_taken_again_and_failed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first attempt (epoch 1) fails; meanwhile the symbol is taken again at epoch 2 and
    a commit fails again. The pipeline starts no second task (one is running): this one
    must reload epoch 2, or the symbol stays RECOVERING for good."""
    monkeypatch.setattr(server, "_RELOAD_BACKOFF", (0.01,))
    node = server.ShardNode(config("postgresql://unused", symbols=()))
    node.ownership.serve(SYMBOL, 1)
    node.ownership.mark_recovering(SYMBOL)
    attempts: list[int] = []

    async def reload(symbol: str, epoch: int) -> None:
        attempts.append(epoch)
        if len(attempts) == 1:
            node.ownership.serve(symbol, 2)  # taken again meanwhile ...
            node.ownership.mark_recovering(symbol)  # ... and failed again
            raise PersistenceError("connection refused")
        node.ownership.serve(symbol, epoch)

    monkeypatch.setattr(node.custody, "reload", reload)
    await asyncio.wait_for(node._reload(SYMBOL), 2)
    assert attempts == [1, 2]
    owned = node.ownership.get(SYMBOL)
    assert owned is not None and owned.epoch == 2 and owned.state is SymbolState.SERVING
