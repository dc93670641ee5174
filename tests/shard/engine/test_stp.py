"""Self-trade prevention: the taker's mode decides; accounts are compared."""

from __future__ import annotations

from shard.engine.types import (
    AmendOrder,
    Fill,
    OrderStatus,
    OrderType,
    RejectCode,
    Report,
    Side,
    StpMode,
    TimeInForce,
)
from tests.shard.engine.flows import BTC, buy, market, order_id, sell
from tests.shard.engine.invariants import EngineLike

S = BTC.symbol
STP = RejectCode.SELF_TRADE_PREVENTED


def oid(seq: int) -> int:
    return order_id(BTC, seq)


def _bob_alice_bob_asks(eng: EngineLike) -> None:
    """Asks at 100: bob 1 (seq 1), alice 2 (seq 2), bob 3 (seq 3)."""
    eng.execute(sell(100, 1, "bob"))
    eng.execute(sell(100, 2, "alice", client_order_id="a-ask"))
    eng.execute(sell(100, 3, "bob"))


def test_stp_none_trades_with_itself(eng: EngineLike) -> None:
    eng.execute(sell(100, 5, "alice", client_order_id="m"))
    r = eng.execute(buy(100, 5, "alice", stp=StpMode.NONE))
    assert r == Report(
        S,
        2,
        oid(2),
        "",
        "alice",
        OrderStatus.FILLED,
        RejectCode.NONE,
        100,
        5,
        0,
        0,
        (Fill(oid(1), "alice", "m", oid(2), 100, 5, 0, 5),),
        (),
        Side.BUY,
    )


def test_makers_stp_mode_is_ignored_the_taker_decides(eng: EngineLike) -> None:
    eng.execute(sell(100, 5, "alice", stp=StpMode.EXPIRE_BOTH))
    r = eng.execute(buy(100, 5, "alice", stp=StpMode.NONE))
    assert (r.status, r.expired, len(r.fills)) == (OrderStatus.FILLED, (), 1)


def test_expire_taker_stops_at_own_maker_and_expires_taker(eng: EngineLike) -> None:
    _bob_alice_bob_asks(eng)
    r = eng.execute(buy(100, 10, "alice", stp=StpMode.EXPIRE_TAKER, client_order_id="t"))
    assert r == Report(
        S,
        4,
        oid(4),
        "t",
        "alice",
        OrderStatus.EXPIRED,
        STP,
        100,
        1,
        0,
        0,
        (Fill(oid(1), "bob", "", oid(4), 100, 1, 0, 1),),
        (),
        Side.BUY,
    )
    book = eng.book(S)
    assert [(o.order_id, o.leaves_qty) for o in book.open_orders()] == [(oid(2), 2), (oid(3), 3)]
    assert book.best_bid() is None


def test_expire_maker_removes_own_makers_and_continues(eng: EngineLike) -> None:
    _bob_alice_bob_asks(eng)
    r = eng.execute(buy(100, 10, "alice", stp=StpMode.EXPIRE_MAKER))
    assert r == Report(
        S,
        4,
        oid(4),
        "",
        "alice",
        OrderStatus.PARTIALLY_FILLED,
        RejectCode.NONE,
        100,
        4,
        6,
        4,
        (
            Fill(oid(1), "bob", "", oid(4), 100, 1, 0, 1),
            Fill(oid(3), "bob", "", oid(4), 100, 3, 0, 3),
        ),
        (oid(2),),
        Side.BUY,
    )
    book = eng.book(S)
    assert book.best_ask() is None
    assert [(o.order_id, o.leaves_qty) for o in book.open_orders()] == [(oid(4), 6)]


def test_expire_maker_frees_the_expired_makers_client_order_id(eng: EngineLike) -> None:
    _bob_alice_bob_asks(eng)
    eng.execute(buy(100, 10, "alice", stp=StpMode.EXPIRE_MAKER))
    r = eng.execute(sell(200, 1, "alice", client_order_id="a-ask"))
    assert r.status == OrderStatus.NEW


def test_expire_both_removes_own_maker_and_expires_taker(eng: EngineLike) -> None:
    _bob_alice_bob_asks(eng)
    r = eng.execute(buy(100, 10, "alice", stp=StpMode.EXPIRE_BOTH))
    assert r == Report(
        S,
        4,
        oid(4),
        "",
        "alice",
        OrderStatus.EXPIRED,
        STP,
        100,
        1,
        0,
        0,
        (Fill(oid(1), "bob", "", oid(4), 100, 1, 0, 1),),
        (oid(2),),
        Side.BUY,
    )
    assert [o.order_id for o in eng.book(S).open_orders()] == [oid(3)]


def test_expire_taker_on_first_maker_expires_with_nothing_filled(eng: EngineLike) -> None:
    eng.execute(buy(100, 4, "alice"))
    r = eng.execute(market(Side.SELL, 4, "alice", stp=StpMode.EXPIRE_TAKER))
    assert r == Report(
        S, 2, oid(2), "", "alice", OrderStatus.EXPIRED, STP, 0, 0, 0, 0, (), (), Side.SELL
    )
    assert eng.book(S).quantity_at(Side.BUY, 100) == 4


def test_expire_maker_removes_several_own_makers_in_match_order(eng: EngineLike) -> None:
    eng.execute(buy(99, 1, "alice"))
    eng.execute(buy(100, 1, "alice"))
    eng.execute(buy(100, 1, "alice"))
    eng.execute(buy(98, 1, "bob"))
    r = eng.execute(sell(98, 2, "alice", stp=StpMode.EXPIRE_MAKER))
    assert r.expired == (oid(2), oid(3), oid(1))
    assert (r.status, r.cum_qty, r.leaves_qty, r.priority) == (
        OrderStatus.PARTIALLY_FILLED,
        1,
        1,
        5,
    )
    assert eng.book(S).best_bid() is None and eng.book(S).best_ask() == 98


def test_stp_does_not_apply_between_different_accounts(eng: EngineLike) -> None:
    eng.execute(sell(100, 5, "bob"))
    r = eng.execute(buy(100, 5, "alice", stp=StpMode.EXPIRE_BOTH))
    assert (r.status, r.expired) == (OrderStatus.FILLED, ())


def test_own_order_beyond_the_limit_price_does_not_trigger_stp(eng: EngineLike) -> None:
    eng.execute(sell(105, 5, "alice"))
    r = eng.execute(buy(100, 5, "alice", stp=StpMode.EXPIRE_BOTH))
    assert (r.status, r.reject_code, r.expired) == (OrderStatus.NEW, RejectCode.NONE, ())
    assert len(eng.book(S).open_orders()) == 2


def test_own_order_after_taker_is_filled_is_not_expired(eng: EngineLike) -> None:
    eng.execute(sell(100, 5, "bob"))
    eng.execute(sell(100, 5, "alice"))
    r = eng.execute(buy(100, 5, "alice", stp=StpMode.EXPIRE_MAKER))
    assert (r.status, r.expired) == (OrderStatus.FILLED, ())
    assert [o.account for o in eng.book(S).open_orders()] == ["alice"]


def test_ioc_expire_maker_reports_expired_not_stp(eng: EngineLike) -> None:
    eng.execute(sell(100, 5, "alice"))
    r = eng.execute(
        buy(
            100,
            5,
            "alice",
            stp=StpMode.EXPIRE_MAKER,
            time_in_force=TimeInForce.IOC,
            order_type=OrderType.LIMIT,
        )
    )
    assert (r.status, r.reject_code, r.expired) == (OrderStatus.EXPIRED, RejectCode.NONE, (oid(1),))
    assert eng.book(S).open_orders() == []


def test_amend_through_the_spread_applies_the_orders_own_stp_mode(eng: EngineLike) -> None:
    eng.execute(buy(95, 5, "alice", stp=StpMode.EXPIRE_BOTH, client_order_id="bid"))
    eng.execute(sell(100, 2, "bob"))
    eng.execute(sell(101, 2, "alice"))
    eng.execute(sell(101, 2, "bob"))
    r = eng.execute(AmendOrder(S, "alice", client_order_id="bid", new_price=101))
    assert r == Report(
        S,
        5,
        oid(1),
        "bid",
        "alice",
        OrderStatus.EXPIRED,
        STP,
        101,
        2,
        0,
        0,
        (Fill(oid(2), "bob", "", oid(1), 100, 2, 0, 2),),
        (oid(3),),
        Side.BUY,
    )
    assert [o.order_id for o in eng.book(S).open_orders()] == [oid(4)]
