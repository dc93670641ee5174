"""A failover hands a shard many symbols at once: at most TAKES_AT_ONCE of them fence and
load together (shard/custody.py), so the writer keeps pool connections for its batches."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shard import custody
from shard.engine import SymbolSpec
from shard.loading import take_symbol
from shard.ownership import SymbolState
from tests.shard.support import config, prepare_db, running_node

pytestmark = pytest.mark.integration

SPECS = tuple(SymbolSpec(f"S{n}-USDT", symbol_id=n) for n in range(1, 7))


async def test_takes_of_many_symbols_hold_at_most_a_few_connections_at_once(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await prepare_db(pg_dsn, SPECS)
    taking, most = 0, 0

    async def counted(*args: Any, **kwargs: Any) -> int:
        nonlocal taking, most
        taking += 1
        most = max(most, taking)
        try:
            await asyncio.sleep(0.05)  # long enough for every take to have started
            return await take_symbol(*args, **kwargs)
        finally:
            taking -= 1

    monkeypatch.setattr(custody, "take_symbol", counted)
    async with running_node(config(pg_dsn, symbols=())) as node:
        await asyncio.gather(*(node.custody.take(spec.symbol) for spec in SPECS))
        states = {spec.symbol: node.ownership.get(spec.symbol) for spec in SPECS}
    assert all(s is not None and s.state is SymbolState.SERVING for s in states.values())
    assert most == custody.TAKES_AT_ONCE
