"""The random flow generator itself: reproducible, varied, and for the given symbols."""

from __future__ import annotations

from collections import Counter

from shard.engine.types import (
    AmendOrder,
    CancelOrder,
    MassCancel,
    OrderType,
    PlaceOrder,
    SetSymbolStatus,
    StpMode,
    TimeInForce,
)
from tests.shard.engine.flows import BTC, UNKNOWN_SYMBOL, random_flow


def test_same_seed_gives_the_same_flow() -> None:
    assert random_flow(7, 500) == random_flow(7, 500)
    assert random_flow(7, 500) != random_flow(8, 500)


def test_flow_has_the_requested_length_and_symbols() -> None:
    flow = random_flow(3, 1_000, symbols=[BTC])
    assert len(flow) == 1_000
    assert {cmd.symbol for cmd in flow} == {BTC.symbol, UNKNOWN_SYMBOL}


def test_flow_mixes_every_kind_of_command_and_order() -> None:
    flow = random_flow(11, 3_000)
    kinds = Counter(type(cmd) for cmd in flow)
    assert all(kinds[k] > 20 for k in (PlaceOrder, CancelOrder, AmendOrder, MassCancel))
    assert kinds[SetSymbolStatus] > 2
    places = [cmd for cmd in flow if isinstance(cmd, PlaceOrder)]
    assert {p.order_type for p in places} >= set(OrderType)
    assert {p.time_in_force for p in places} >= set(TimeInForce)
    assert {p.stp for p in places} >= set(StpMode)
    assert any(p.post_only for p in places)
    assert len({p.account for p in places}) <= 4  # few accounts: self-trades happen
    by_client_id = [c for c in flow if isinstance(c, CancelOrder | AmendOrder) and c.order_id == 0]
    assert len(by_client_id) > 20
