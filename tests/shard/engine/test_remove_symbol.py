"""A removed book is freed by reference counting, with the cycle collector out of the way
(the shard freezes long-lived objects out of its reach: shard/gc_policy.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from shard.engine import MatchingEngine
from shard.engine.levels import PriceLevel, RestingOrder
from tests.shard.engine.flows import BTC, DEFAULT_SYMBOLS, ETH, buy, sell


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _alive() -> int:
    return sum(isinstance(o, (PriceLevel, RestingOrder)) for o in gc.get_objects())


def test_a_removed_book_is_freed_without_the_cycle_collector(no_collector: None) -> None:
    engine = MatchingEngine()
    for spec in DEFAULT_SYMBOLS:
        engine.add_symbol(spec)
    before = _alive()
    for i in range(50):
        engine.execute(buy(100 - i, 1, f"b{i}", client_order_id=f"b{i}"))
        engine.execute(sell(200 + i, 1, f"s{i}", client_order_id=f"s{i}"))
    engine.execute(buy(50, 20, "eth", symbol=ETH.symbol))
    assert _alive() - before == 200 + 2  # 100 orders and 100 levels on BTC, 1 + 1 on ETH
    engine.remove_symbol(BTC.symbol)
    assert _alive() - before == 2
    assert engine.book(ETH.symbol).best_bid() == 50  # the other book is untouched
