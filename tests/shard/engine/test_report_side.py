"""Report.side: the order's side (1 BUY, 2 SELL), 0 where no single order is concerned or
no order was found. The wire's ExecutionReport.side is this field."""

from __future__ import annotations

from typing import cast

import pytest

from shard.engine.types import (
    AmendOrder,
    CancelOrder,
    MassCancel,
    OrderStatus,
    RejectCode,
    SetSymbolStatus,
    Side,
    StpMode,
    SymbolStatus,
)
from tests.shard.engine.flows import BTC, UNKNOWN_SYMBOL, buy, market, order_id, sell
from tests.shard.engine.invariants import EngineLike

S = BTC.symbol
BUY, SELL = Side.BUY, Side.SELL


def oid(seq: int) -> int:
    return order_id(BTC, seq)


@pytest.mark.parametrize("side", [BUY, SELL])
def test_placements_carry_their_side(eng: EngineLike, side: Side) -> None:
    place = buy if side == BUY else sell
    resting = eng.execute(place(100, 5, "alice"))
    rejected = eng.execute(place(100, 0, "alice"))
    ioc = eng.execute(place(100, 1, "bob", time_in_force=2))
    assert (resting.status, rejected.reject_code) == (OrderStatus.NEW, RejectCode.INVALID_QUANTITY)
    assert (resting.side, rejected.side, ioc.side) == (side, side, side)


def test_rejected_placement_with_an_invalid_side_echoes_it(eng: EngineLike) -> None:
    r = eng.execute(buy(100, 1)._replace(side=cast(Side, 3)))
    assert (r.reject_code, r.side) == (RejectCode.INVALID_SIDE, 3)


def test_taker_expired_by_stp_and_filled_taker_carry_their_side(eng: EngineLike) -> None:
    eng.execute(buy(100, 4, "alice"))
    stopped = eng.execute(market(SELL, 4, "alice", stp=StpMode.EXPIRE_TAKER))
    filled = eng.execute(market(SELL, 4, "bob"))
    assert (stopped.reject_code, stopped.side) == (RejectCode.SELF_TRADE_PREVENTED, SELL)
    assert (filled.status, filled.side) == (OrderStatus.FILLED, SELL)


@pytest.mark.parametrize("side", [BUY, SELL])
def test_cancel_carries_the_cancelled_orders_side(eng: EngineLike, side: Side) -> None:
    eng.execute((buy if side == BUY else sell)(100, 5, "alice", client_order_id="c"))
    eng.execute((buy if side == BUY else sell)(100, 5, "alice"))
    by_id = eng.execute(CancelOrder(S, "alice", order_id=oid(2)))
    by_cloid = eng.execute(CancelOrder(S, "alice", client_order_id="c"))
    assert (by_id.status, by_cloid.status) == (OrderStatus.CANCELED, OrderStatus.CANCELED)
    assert (by_id.side, by_cloid.side) == (side, side)


@pytest.mark.parametrize("side", [BUY, SELL])
def test_amend_carries_the_amended_orders_side(eng: EngineLike, side: Side) -> None:
    eng.execute((buy if side == BUY else sell)(100, 5, "alice"))
    reduced = eng.execute(AmendOrder(S, "alice", oid(1), new_quantity=3))
    requeued = eng.execute(AmendOrder(S, "alice", oid(1), new_quantity=6))
    refused = eng.execute(AmendOrder(S, "alice", oid(1), new_price=-1))
    assert (reduced.status, requeued.status) == (OrderStatus.NEW, OrderStatus.NEW)
    assert refused.reject_code == RejectCode.INVALID_PRICE  # found, then refused: its side
    assert (reduced.side, requeued.side, refused.side) == (side, side, side)


def test_amend_that_crosses_carries_the_amended_orders_side(eng: EngineLike) -> None:
    eng.execute(buy(99, 5, "bob"))
    eng.execute(sell(101, 2, "alice"))
    r = eng.execute(AmendOrder(S, "alice", oid(2), new_price=99))
    assert (r.status, r.cum_qty, r.side) == (OrderStatus.FILLED, 2, SELL)


def test_cancel_or_amend_of_no_order_found_carries_0(eng: EngineLike) -> None:
    eng.execute(sell(100, 5, "alice", client_order_id="c"))
    not_found = [
        eng.execute(CancelOrder(S, "alice", order_id=oid(9))),
        eng.execute(CancelOrder(S, "alice", client_order_id="nope")),
        eng.execute(CancelOrder(S, "bob", order_id=oid(1))),  # another account's order
        eng.execute(CancelOrder(S, "alice")),  # no reference
        eng.execute(CancelOrder(S, "", order_id=oid(1))),
        eng.execute(AmendOrder(S, "alice", oid(9), new_quantity=1)),
        eng.execute(AmendOrder(S, "bob", client_order_id="c", new_quantity=1)),
        eng.execute(CancelOrder(UNKNOWN_SYMBOL, "alice", order_id=oid(1))),
    ]
    assert all(r.status == OrderStatus.REJECTED for r in not_found)
    assert [r.side for r in not_found] == [0] * len(not_found)


def test_amend_while_halted_carries_0(eng: EngineLike) -> None:
    eng.execute(sell(100, 5, "alice"))
    eng.execute(SetSymbolStatus(S, SymbolStatus.HALTED))
    r = eng.execute(AmendOrder(S, "alice", oid(1), new_quantity=1))
    assert (r.reject_code, r.side) == (RejectCode.SYMBOL_HALTED, 0)


def test_mass_cancel_and_set_symbol_status_carry_0(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice"))
    eng.execute(sell(101, 5, "alice"))
    one_side = eng.execute(MassCancel(S, "alice", SELL))
    both = eng.execute(MassCancel(S, "alice"))
    rejected = eng.execute(MassCancel(S, ""))
    status = eng.execute(SetSymbolStatus(S, SymbolStatus.HALTED))
    assert (one_side.expired, both.expired) == ((oid(2),), (oid(1),))
    assert [r.side for r in (one_side, both, rejected, status)] == [0, 0, 0, 0]


def test_unknown_symbol_placement_carries_its_side(eng: EngineLike) -> None:
    r = eng.execute(sell(100, 5, "alice", symbol=UNKNOWN_SYMBOL))
    assert (r.reject_code, r.side) == (RejectCode.UNKNOWN_SYMBOL, SELL)
    r = eng.execute(MassCancel(UNKNOWN_SYMBOL, "alice", SELL))
    assert (r.reject_code, r.side) == (RejectCode.UNKNOWN_SYMBOL, 0)
