"""Order types and time in force: LIMIT, MARKET, GTC, IOC, FOK, post-only."""

from __future__ import annotations

import pytest

from shard.engine.types import (
    Fill,
    OpenOrder,
    OrderStatus,
    OrderType,
    RejectCode,
    Report,
    Side,
    StpMode,
    TimeInForce,
)
from tests.shard.engine.flows import BTC, buy, market, order_id, sell
from tests.shard.engine.invariants import EngineLike, book_state

S = BTC.symbol
NEW, PART, FILLED = OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED
EXPIRED, REJECTED = OrderStatus.EXPIRED, OrderStatus.REJECTED
OK = RejectCode.NONE
IOC, FOK = TimeInForce.IOC, TimeInForce.FOK
BUY, SELL = Side.BUY, Side.SELL


def oid(seq: int) -> int:
    return order_id(BTC, seq)


def test_limit_buy_rests_when_not_crossing(eng: EngineLike) -> None:
    r = eng.execute(buy(100, 5, "alice", client_order_id="a1"))
    assert r == Report(S, 1, oid(1), "a1", "alice", NEW, OK, 100, 0, 5, 1, (), (), BUY)
    book = eng.book(S)
    assert (book.best_bid(), book.best_ask()) == (100, None)
    assert book.open_orders() == [
        OpenOrder(oid(1), "alice", "a1", Side.BUY, 100, 5, 0, 5, 1, StpMode.NONE, False)
    ]


def test_limit_sell_rests_when_not_crossing(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "bob"))
    r = eng.execute(sell(101, 2, "alice"))
    assert r == Report(S, 2, oid(2), "", "alice", NEW, OK, 101, 0, 2, 2, (), (), SELL)
    assert (eng.book(S).best_bid(), eng.book(S).best_ask()) == (100, 101)


def test_limit_crossing_fills_at_maker_price_and_rests_remainder(eng: EngineLike) -> None:
    eng.execute(sell(101, 3, "bob", client_order_id="b1"))
    r = eng.execute(buy(102, 5, "alice"))
    fill = Fill(oid(1), "bob", "b1", oid(2), 101, 3, 0, 3)
    assert r == Report(S, 2, oid(2), "", "alice", PART, OK, 102, 3, 2, 2, (fill,), (), BUY)
    book = eng.book(S)
    assert (book.best_bid(), book.best_ask()) == (102, None)
    assert book.quantity_at(Side.BUY, 102) == 2


def test_limit_filled_by_larger_maker_leaves_maker_partially_filled(eng: EngineLike) -> None:
    eng.execute(buy(100, 10, "bob"))
    r = eng.execute(sell(99, 4, "alice"))
    assert r == Report(
        S,
        2,
        oid(2),
        "",
        "alice",
        FILLED,
        OK,
        99,
        4,
        0,
        0,
        (Fill(oid(1), "bob", "", oid(2), 100, 4, 6, 4),),
        (),
        SELL,
    )
    [maker] = eng.book(S).open_orders()
    assert (maker.cum_qty, maker.leaves_qty, maker.quantity, maker.priority) == (4, 6, 10, 1)


def test_limit_sweeps_levels_best_price_first(eng: EngineLike) -> None:
    for price in (103, 101, 102):
        eng.execute(sell(price, 2, "bob"))
    r = eng.execute(buy(103, 5, "alice"))
    assert [(f.maker_order_id, f.price, f.quantity) for f in r.fills] == [
        (oid(2), 101, 2),
        (oid(3), 102, 2),
        (oid(1), 103, 1),
    ]
    assert r.status == FILLED and r.cum_qty == 5
    assert eng.book(S).depth(Side.SELL, 5) == [(103, 1, 1)]


def test_market_buy_fills_what_book_offers_and_expires_rest(eng: EngineLike) -> None:
    eng.execute(sell(101, 2, "bob"))
    eng.execute(sell(105, 3, "carol"))
    r = eng.execute(market(Side.BUY, 10, "alice"))
    assert r == Report(
        S,
        3,
        oid(3),
        "",
        "alice",
        EXPIRED,
        OK,
        0,
        5,
        0,
        0,
        (
            Fill(oid(1), "bob", "", oid(3), 101, 2, 0, 2),
            Fill(oid(2), "carol", "", oid(3), 105, 3, 0, 3),
        ),
        (),
        BUY,
    )
    book = eng.book(S)
    assert book.open_orders() == [] and book.best_bid() is None and book.best_ask() is None


def test_market_order_on_empty_book_expires_and_never_rests(eng: EngineLike) -> None:
    r = eng.execute(market(Side.SELL, 4, "alice"))
    assert r == Report(S, 1, oid(1), "", "alice", EXPIRED, OK, 0, 0, 0, 0, (), (), SELL)
    assert eng.book(S).open_orders() == []


def test_market_sell_fully_filled_is_filled(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "bob"))
    eng.execute(buy(90, 5, "bob"))
    r = eng.execute(market(Side.SELL, 7, "alice"))
    assert (r.status, r.cum_qty, r.leaves_qty) == (FILLED, 7, 0)
    assert [(f.price, f.quantity, f.maker_leaves) for f in r.fills] == [(100, 5, 0), (90, 2, 3)]


def test_ioc_fills_what_it_can_and_expires_remainder(eng: EngineLike) -> None:
    eng.execute(sell(100, 2, "bob"))
    r = eng.execute(buy(100, 5, "alice", time_in_force=IOC))
    assert (r.status, r.reject_code, r.cum_qty, r.leaves_qty, r.priority) == (EXPIRED, OK, 2, 0, 0)
    assert eng.book(S).open_orders() == []


def test_ioc_that_does_not_cross_expires_without_resting(eng: EngineLike) -> None:
    eng.execute(sell(101, 2, "bob"))
    r = eng.execute(buy(100, 5, "alice", time_in_force=IOC))
    assert r == Report(S, 2, oid(2), "", "alice", EXPIRED, OK, 100, 0, 0, 0, (), (), BUY)
    assert eng.book(S).best_bid() is None


def test_ioc_fully_filled_is_filled(eng: EngineLike) -> None:
    eng.execute(sell(100, 5, "bob"))
    r = eng.execute(buy(100, 5, "alice", time_in_force=IOC))
    assert (r.status, r.cum_qty) == (FILLED, 5)


def test_fok_fills_completely_across_levels(eng: EngineLike) -> None:
    eng.execute(sell(100, 2, "bob"))
    eng.execute(sell(101, 3, "carol"))
    r = eng.execute(buy(101, 5, "alice", time_in_force=FOK))
    assert (r.status, r.cum_qty, len(r.fills)) == (FILLED, 5, 2)
    assert eng.book(S).open_orders() == []


def test_fok_not_fillable_does_nothing(eng: EngineLike) -> None:
    eng.execute(sell(100, 2, "bob"))
    eng.execute(sell(101, 3, "carol"))
    before = book_state(eng.book(S))
    r = eng.execute(buy(101, 6, "alice", time_in_force=FOK, client_order_id="f"))
    assert r == Report(
        S, 3, 0, "f", "alice", REJECTED, RejectCode.FOK_NOT_FILLABLE, 101, 0, 0, 0, (), (), BUY
    )
    assert book_state(eng.book(S)) == before


def test_fok_does_not_count_liquidity_beyond_its_limit(eng: EngineLike) -> None:
    eng.execute(sell(100, 2, "bob"))
    eng.execute(sell(102, 9, "carol"))
    r = eng.execute(buy(101, 3, "alice", time_in_force=FOK))
    assert r.reject_code == RejectCode.FOK_NOT_FILLABLE


def test_market_fok_takes_any_price_or_nothing(eng: EngineLike) -> None:
    eng.execute(buy(100, 2, "bob"))
    eng.execute(buy(50, 2, "carol"))
    assert eng.execute(market(Side.SELL, 5, "alice", time_in_force=FOK)).reject_code == (
        RejectCode.FOK_NOT_FILLABLE
    )
    r = eng.execute(market(Side.SELL, 4, "alice", time_in_force=FOK))
    assert (r.status, r.cum_qty, r.price) == (FILLED, 4, 0)


def test_fok_expire_maker_does_not_count_own_orders(eng: EngineLike) -> None:
    eng.execute(sell(100, 5, "alice"))
    eng.execute(sell(101, 3, "bob"))
    r = eng.execute(buy(101, 4, "alice", time_in_force=FOK, stp=StpMode.EXPIRE_MAKER))
    assert r.reject_code == RejectCode.FOK_NOT_FILLABLE
    assert len(eng.book(S).open_orders()) == 2  # the own maker was not expired by the reject
    r = eng.execute(buy(101, 3, "alice", time_in_force=FOK, stp=StpMode.EXPIRE_MAKER))
    assert r == Report(
        S,
        4,
        oid(4),
        "",
        "alice",
        FILLED,
        OK,
        101,
        3,
        0,
        0,
        (Fill(oid(2), "bob", "", oid(4), 101, 3, 0, 3),),
        (oid(1),),
        BUY,
    )
    assert eng.book(S).open_orders() == []


@pytest.mark.parametrize("stp", [StpMode.EXPIRE_TAKER, StpMode.EXPIRE_BOTH])
def test_fok_expire_taker_or_both_stops_the_walk_at_own_order(
    eng: EngineLike, stp: StpMode
) -> None:
    eng.execute(sell(100, 2, "bob"))
    eng.execute(sell(100, 5, "alice"))
    eng.execute(sell(101, 5, "carol"))
    r = eng.execute(buy(101, 3, "alice", time_in_force=FOK, stp=stp))
    assert r.reject_code == RejectCode.FOK_NOT_FILLABLE
    r = eng.execute(buy(101, 2, "alice", time_in_force=FOK, stp=stp))
    assert (r.status, r.cum_qty, r.expired) == (FILLED, 2, ())
    assert [o.account for o in eng.book(S).open_orders()] == ["alice", "carol"]


def test_fok_with_stp_none_counts_and_trades_own_orders(eng: EngineLike) -> None:
    eng.execute(sell(100, 2, "bob"))
    eng.execute(sell(100, 5, "alice"))
    r = eng.execute(buy(100, 7, "alice", time_in_force=FOK))
    assert (r.status, [f.maker_account for f in r.fills]) == (FILLED, ["bob", "alice"])


def test_post_only_rests_when_it_does_not_cross(eng: EngineLike) -> None:
    eng.execute(sell(101, 2, "bob"))
    r = eng.execute(buy(100, 5, "alice", post_only=True))
    assert (r.status, r.leaves_qty, r.priority) == (NEW, 5, 2)
    assert eng.book(S).open_orders()[0].post_only is True


@pytest.mark.parametrize(
    ("side", "price"), [(Side.BUY, 101), (Side.BUY, 105), (Side.SELL, 99), (Side.SELL, 90)]
)
def test_post_only_rejected_when_it_would_take(eng: EngineLike, side: Side, price: int) -> None:
    eng.execute(sell(101, 2, "bob"))
    eng.execute(buy(99, 2, "bob"))
    before = book_state(eng.book(S))
    order = (buy if side == Side.BUY else sell)(price, 1, "alice", post_only=True)
    r = eng.execute(order)
    assert r == Report(
        S,
        3,
        0,
        "",
        "alice",
        REJECTED,
        RejectCode.POST_ONLY_WOULD_TAKE,
        price,
        0,
        0,
        0,
        (),
        (),
        side,
    )
    assert book_state(eng.book(S)) == before


def test_post_only_would_take_counts_own_orders(eng: EngineLike) -> None:
    eng.execute(sell(101, 2, "alice"))
    r = eng.execute(buy(101, 1, "alice", post_only=True, stp=StpMode.EXPIRE_MAKER))
    assert r.reject_code == RejectCode.POST_ONLY_WOULD_TAKE


@pytest.mark.parametrize(
    ("order_type", "tif"),
    [
        (OrderType.LIMIT, IOC),
        (OrderType.LIMIT, FOK),
        (OrderType.MARKET, TimeInForce.GTC),
        (OrderType.MARKET, IOC),
        (OrderType.MARKET, FOK),
    ],
)
def test_post_only_not_allowed_unless_limit_gtc(
    eng: EngineLike, order_type: OrderType, tif: TimeInForce
) -> None:
    price = 100 if order_type == OrderType.LIMIT else 0
    r = eng.execute(
        buy(price, 1, "alice", order_type=order_type, time_in_force=tif, post_only=True)
    )
    assert r == Report(
        S,
        1,
        0,
        "",
        "alice",
        REJECTED,
        RejectCode.POST_ONLY_NOT_ALLOWED,
        price,
        0,
        0,
        0,
        (),
        (),
        BUY,
    )
    assert eng.book(S).open_orders() == []


def test_gtc_market_order_never_rests(eng: EngineLike) -> None:
    eng.execute(sell(100, 1, "bob"))
    r = eng.execute(market(Side.BUY, 3, "alice", time_in_force=TimeInForce.GTC))
    assert (r.status, r.cum_qty, r.leaves_qty, r.priority) == (EXPIRED, 1, 0, 0)
    assert eng.book(S).best_bid() is None
