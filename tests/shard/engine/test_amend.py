"""AmendOrder: priority kept on reduce, lost on increase or reprice; crossing amends match."""

from __future__ import annotations

from shard.engine.types import (
    AmendOrder,
    Fill,
    OrderStatus,
    RejectCode,
    Report,
    Side,
    StpMode,
)
from tests.shard.engine.flows import BTC, buy, order_id, sell
from tests.shard.engine.invariants import EngineLike, book_state

S = BTC.symbol
NEW, PART, OK = OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, RejectCode.NONE
BUY, SELL = Side.BUY, Side.SELL


def oid(seq: int) -> int:
    return order_id(BTC, seq)


def _queue(eng: EngineLike) -> None:
    """Bids at 100: alice 5 (seq 1), bob 5 (seq 2)."""
    eng.execute(buy(100, 5, "alice", client_order_id="a"))
    eng.execute(buy(100, 5, "bob"))


def _queue_order(eng: EngineLike) -> list[tuple[str, int, int]]:
    return [(o.account, o.leaves_qty, o.priority) for o in eng.book(S).open_orders()]


def test_amend_reducing_quantity_keeps_priority(eng: EngineLike) -> None:
    _queue(eng)
    r = eng.execute(AmendOrder(S, "alice", order_id=oid(1), new_quantity=3))
    assert r == Report(S, 3, oid(1), "a", "alice", NEW, OK, 100, 0, 3, 1, (), (), BUY)
    assert _queue_order(eng) == [("alice", 3, 1), ("bob", 5, 2)]
    assert eng.book(S).depth(Side.BUY, 1) == [(100, 8, 2)]
    fills = eng.execute(sell(100, 4, "carol")).fills
    assert [(f.maker_account, f.quantity) for f in fills] == [("alice", 3), ("bob", 1)]


def test_amend_to_the_same_price_and_quantity_keeps_priority(eng: EngineLike) -> None:
    _queue(eng)
    r = eng.execute(AmendOrder(S, "alice", order_id=oid(1), new_price=100, new_quantity=5))
    assert (r.status, r.priority, r.seq) == (NEW, 1, 3)
    assert _queue_order(eng) == [("alice", 5, 1), ("bob", 5, 2)]


def test_amend_with_no_changes_is_accepted_and_keeps_priority(eng: EngineLike) -> None:
    _queue(eng)
    r = eng.execute(AmendOrder(S, "alice", order_id=oid(1)))
    assert r == Report(S, 3, oid(1), "a", "alice", NEW, OK, 100, 0, 5, 1, (), (), BUY)


def test_amend_increasing_quantity_loses_priority(eng: EngineLike) -> None:
    _queue(eng)
    r = eng.execute(AmendOrder(S, "alice", order_id=oid(1), new_quantity=7))
    assert r == Report(S, 3, oid(1), "a", "alice", NEW, OK, 100, 0, 7, 3, (), (), BUY)
    assert _queue_order(eng) == [("bob", 5, 2), ("alice", 7, 3)]
    fills = eng.execute(sell(100, 6, "carol")).fills
    assert [(f.maker_account, f.quantity) for f in fills] == [("bob", 5), ("alice", 1)]


def test_amend_reprice_loses_priority_and_keeps_the_order_id(eng: EngineLike) -> None:
    _queue(eng)
    eng.execute(buy(101, 5, "carol"))
    r = eng.execute(AmendOrder(S, "alice", client_order_id="a", new_price=101))
    assert r == Report(S, 4, oid(1), "a", "alice", NEW, OK, 101, 0, 5, 4, (), (), BUY)
    orders = eng.book(S).open_orders()
    assert [(o.order_id, o.price, o.priority) for o in orders] == [
        (oid(3), 101, 3),
        (oid(1), 101, 4),
        (oid(2), 100, 2),
    ]
    assert eng.book(S).quantity_at(Side.BUY, 100) == 5


def test_amend_reprice_down_with_smaller_quantity_still_loses_priority(eng: EngineLike) -> None:
    _queue(eng)
    eng.execute(buy(99, 1, "carol"))
    r = eng.execute(AmendOrder(S, "alice", order_id=oid(1), new_price=99, new_quantity=2))
    assert (r.priority, r.leaves_qty) == (4, 2)
    assert _queue_order(eng) == [("bob", 5, 2), ("carol", 1, 3), ("alice", 2, 4)]


def test_amend_reprice_through_the_spread_trades_at_makers_prices(eng: EngineLike) -> None:
    eng.execute(sell(101, 2, "bob"))
    eng.execute(sell(102, 2, "carol", client_order_id="c"))
    eng.execute(buy(99, 5, "alice", client_order_id="a"))
    r = eng.execute(AmendOrder(S, "alice", order_id=oid(3), new_price=103))
    assert r == Report(
        S,
        4,
        oid(3),
        "a",
        "alice",
        PART,
        OK,
        103,
        4,
        1,
        4,
        (
            Fill(oid(1), "bob", "", oid(3), 101, 2, 0, 2),
            Fill(oid(2), "carol", "c", oid(3), 102, 2, 0, 2),
        ),
        (),
        BUY,
    )
    book = eng.book(S)
    assert (book.best_bid(), book.best_ask()) == (103, None)
    assert book.quantity_at(Side.BUY, 99) == 0


def test_amend_that_fills_completely_removes_the_order(eng: EngineLike) -> None:
    eng.execute(sell(101, 9, "bob"))
    eng.execute(buy(99, 5, "alice", client_order_id="a"))
    r = eng.execute(AmendOrder(S, "alice", order_id=oid(2), new_price=101))
    assert (r.status, r.cum_qty, r.leaves_qty, r.priority) == (OrderStatus.FILLED, 5, 0, 0)
    assert [o.order_id for o in eng.book(S).open_orders()] == [oid(1)]
    assert eng.execute(buy(90, 1, "alice", client_order_id="a")).status == NEW


def test_amend_of_partially_filled_order_keeps_cum_qty(eng: EngineLike) -> None:
    eng.execute(buy(100, 10, "alice"))
    eng.execute(sell(100, 4, "bob"))
    r = eng.execute(AmendOrder(S, "alice", order_id=oid(1), new_quantity=8))
    assert r == Report(S, 3, oid(1), "", "alice", PART, OK, 100, 4, 4, 1, (), (), BUY)
    r = eng.execute(AmendOrder(S, "alice", order_id=oid(1), new_quantity=12))
    assert r == Report(S, 4, oid(1), "", "alice", PART, OK, 100, 4, 8, 4, (), (), BUY)
    [o] = eng.book(S).open_orders()
    assert (o.quantity, o.cum_qty, o.leaves_qty) == (12, 4, 8)


def test_amend_quantity_not_above_filled_is_rejected(eng: EngineLike) -> None:
    eng.execute(buy(100, 10, "alice"))
    eng.execute(sell(100, 4, "bob"))
    before = book_state(eng.book(S))
    for seq, qty in ((3, 4), (4, 3)):
        r = eng.execute(AmendOrder(S, "alice", order_id=oid(1), new_quantity=qty))
        assert r == Report(
            S,
            seq,
            oid(1),
            "",
            "alice",
            OrderStatus.REJECTED,
            RejectCode.AMEND_QUANTITY_NOT_ABOVE_FILLED,
            0,
            0,
            0,
            0,
            (),
            (),
            BUY,
        )
    assert book_state(eng.book(S)) == before


def test_amend_of_another_accounts_order_is_unknown(eng: EngineLike) -> None:
    _queue(eng)
    r = eng.execute(AmendOrder(S, "bob", order_id=oid(1), new_quantity=1))
    assert (r.reject_code, r.order_id, r.account) == (RejectCode.UNKNOWN_ORDER, oid(1), "bob")
    assert _queue_order(eng) == [("alice", 5, 1), ("bob", 5, 2)]


def test_amend_post_only_order_across_the_spread_is_rejected(eng: EngineLike) -> None:
    eng.execute(sell(101, 2, "bob"))
    eng.execute(buy(99, 5, "alice", post_only=True))
    before = book_state(eng.book(S))
    r = eng.execute(AmendOrder(S, "alice", order_id=oid(2), new_price=101))
    assert r.reject_code == RejectCode.POST_ONLY_WOULD_TAKE
    assert book_state(eng.book(S)) == before
    r = eng.execute(AmendOrder(S, "alice", order_id=oid(2), new_price=100))
    assert (r.status, r.priority) == (NEW, 4)
    assert eng.book(S).open_orders()[0].post_only is True


def test_amend_of_a_sell_reprices_down_through_bids(eng: EngineLike) -> None:
    eng.execute(buy(100, 3, "bob"))
    eng.execute(sell(105, 5, "alice", stp=StpMode.EXPIRE_MAKER))
    r = eng.execute(AmendOrder(S, "alice", order_id=oid(2), new_price=99, new_quantity=4))
    assert r == Report(
        S,
        3,
        oid(2),
        "",
        "alice",
        PART,
        OK,
        99,
        3,
        1,
        3,
        (Fill(oid(1), "bob", "", oid(2), 100, 3, 0, 3),),
        (),
        SELL,
    )
    [o] = eng.book(S).open_orders()
    assert (o.side, o.price, o.quantity, o.stp) == (Side.SELL, 99, 4, StpMode.EXPIRE_MAKER)


def test_amend_by_order_id_ignores_a_matching_client_order_id(eng: EngineLike) -> None:
    _queue(eng)
    r = eng.execute(AmendOrder(S, "alice", order_id=oid(9), client_order_id="a", new_quantity=1))
    assert (r.reject_code, r.order_id, r.client_order_id) == (RejectCode.UNKNOWN_ORDER, oid(9), "a")
    assert _queue_order(eng) == [("alice", 5, 1), ("bob", 5, 2)]


def test_amend_of_partially_filled_order_expired_by_stp_reports_total_cum(
    eng: EngineLike,
) -> None:
    eng.execute(buy(100, 10, "alice", stp=StpMode.EXPIRE_TAKER))
    eng.execute(sell(100, 3, "bob"))  # alice cum 3
    eng.execute(sell(101, 2, "bob"))
    eng.execute(sell(101, 2, "alice"))
    r = eng.execute(AmendOrder(S, "alice", order_id=oid(1), new_price=101))
    assert r == Report(
        S, 5, oid(1), "", "alice", OrderStatus.EXPIRED, RejectCode.SELF_TRADE_PREVENTED, 101,
        5, 0, 0, (Fill(oid(3), "bob", "", oid(1), 101, 2, 0, 2),), (), BUY,
    )  # fmt: skip
    assert [o.order_id for o in eng.book(S).open_orders()] == [oid(4)]
