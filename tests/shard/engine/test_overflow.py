"""int64 limits: exactly at the limit is accepted, one past it is rejected."""

from __future__ import annotations

from shard.engine.types import INT64_MAX, AmendOrder, OrderStatus, RejectCode, Side, TimeInForce
from tests.shard.engine.flows import BTC, buy, market, order_id, sell
from tests.shard.engine.invariants import EngineLike

S = BTC.symbol
BIG = 2**62


def oid(seq: int) -> int:
    return order_id(BTC, seq)


def test_price_of_int64_max_is_accepted(eng: EngineLike) -> None:
    r = eng.execute(sell(INT64_MAX, 1, "alice"))
    assert (r.status, r.price) == (OrderStatus.NEW, INT64_MAX)
    assert eng.book(S).best_ask() == INT64_MAX


def test_quantity_of_int64_max_at_price_1_is_accepted(eng: EngineLike) -> None:
    r = eng.execute(buy(1, INT64_MAX, "alice"))
    assert (r.status, r.leaves_qty) == (OrderStatus.NEW, INT64_MAX)
    assert eng.book(S).depth(Side.BUY, 1) == [(1, INT64_MAX, 1)]


def test_notional_exactly_int64_max_is_accepted(eng: EngineLike) -> None:
    # INT64_MAX = 7 * 7 * 73 * 127 * 337 * 92737 * 649657
    r = eng.execute(buy(7 * 7 * 73, INT64_MAX // (7 * 7 * 73), "alice"))
    assert r.status == OrderStatus.NEW
    r = eng.execute(buy(7 * 7 * 73, INT64_MAX // (7 * 7 * 73) + 1, "bob"))
    assert r.reject_code == RejectCode.NOTIONAL_OVERFLOW


def test_level_quantity_exactly_int64_max_is_accepted(eng: EngineLike) -> None:
    assert eng.execute(buy(1, BIG, "alice")).status == OrderStatus.NEW
    assert eng.execute(buy(1, INT64_MAX - BIG, "bob")).status == OrderStatus.NEW
    assert eng.book(S).quantity_at(Side.BUY, 1) == INT64_MAX
    r = eng.execute(buy(1, 1, "carol"))
    assert r.reject_code == RejectCode.LEVEL_QUANTITY_OVERFLOW
    assert eng.execute(buy(2, 1, "carol")).status == OrderStatus.NEW


def test_level_overflow_is_not_checked_for_orders_that_cannot_rest(eng: EngineLike) -> None:
    eng.execute(buy(1, BIG, "alice"))
    r = eng.execute(buy(1, BIG, "bob", time_in_force=TimeInForce.IOC))
    assert (r.status, r.reject_code) == (OrderStatus.EXPIRED, RejectCode.NONE)


def test_crossing_gtc_is_checked_against_its_own_level_before_matching(eng: EngineLike) -> None:
    eng.execute(buy(1, BIG, "alice"))
    eng.execute(buy(1, BIG - 1, "alice"))
    eng.execute(sell(1, 1, "bob"))  # fills against alice's first bid
    r = eng.execute(sell(1, BIG, "bob"))  # asks at 1: empty level; bids do not count
    assert (r.status, r.cum_qty) == (OrderStatus.FILLED, BIG)


def test_amend_increase_does_not_count_its_own_old_leaves(eng: EngineLike) -> None:
    eng.execute(buy(1, BIG, "alice"))
    r = eng.execute(AmendOrder(S, "alice", oid(1), new_quantity=INT64_MAX))
    assert (r.status, r.leaves_qty, r.priority) == (OrderStatus.NEW, INT64_MAX, 2)
    assert eng.book(S).quantity_at(Side.BUY, 1) == INT64_MAX


def test_amend_reprice_into_a_full_level_is_rejected_reduce_is_not(eng: EngineLike) -> None:
    eng.execute(buy(1, INT64_MAX - 5, "alice"))
    eng.execute(buy(2, 10, "bob"))
    r = eng.execute(AmendOrder(S, "bob", oid(2), new_price=1))
    assert r.reject_code == RejectCode.LEVEL_QUANTITY_OVERFLOW
    r = eng.execute(AmendOrder(S, "bob", oid(2), new_price=1, new_quantity=5))
    assert (r.status, r.priority) == (OrderStatus.NEW, 4)
    assert eng.book(S).quantity_at(Side.BUY, 1) == INT64_MAX


def test_market_order_with_huge_quantity_has_no_notional_check(eng: EngineLike) -> None:
    eng.execute(sell(1000, 3, "bob"))
    r = eng.execute(market(Side.BUY, INT64_MAX, "alice"))
    assert (r.status, r.cum_qty) == (OrderStatus.EXPIRED, 3)
