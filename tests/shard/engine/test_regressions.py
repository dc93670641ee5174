"""Cases real matching engines got wrong, one named test each."""

from __future__ import annotations

from shard.engine.types import (
    AmendOrder,
    CancelOrder,
    Fill,
    Level,
    OrderStatus,
    RejectCode,
    Side,
    TimeInForce,
)
from tests.shard.engine.flows import BTC, buy, order_id, sell
from tests.shard.engine.invariants import EngineLike, book_state, check_book

S = BTC.symbol


def oid(seq: int) -> int:
    return order_id(BTC, seq)


def test_cancel_middle_of_fifo_level_then_sweep_keeps_survivor_order(eng: EngineLike) -> None:
    for account in ("a", "b", "c", "d", "e"):
        eng.execute(sell(100, 1, account))
    eng.execute(CancelOrder(S, "c", oid(3)))
    eng.execute(CancelOrder(S, "b", oid(2)))
    assert eng.book(S).depth(Side.SELL, 1) == [Level(100, 3, 3)]
    r = eng.execute(buy(100, 3, "z"))
    assert [f.maker_order_id for f in r.fills] == [oid(1), oid(4), oid(5)]
    assert eng.book(S).best_ask() is None


def test_partially_filled_maker_keeps_its_place_at_the_front(eng: EngineLike) -> None:
    eng.execute(sell(100, 5, "a"))
    eng.execute(sell(100, 5, "b"))
    eng.execute(buy(100, 2, "z"))
    r = eng.execute(buy(100, 4, "z"))
    assert [(f.maker_account, f.quantity, f.maker_leaves) for f in r.fills] == [
        ("a", 3, 0),
        ("b", 1, 4),
    ]


def test_ioc_remainder_does_not_rest(eng: EngineLike) -> None:
    eng.execute(sell(100, 3, "bob"))
    r = eng.execute(buy(101, 10, "alice", time_in_force=TimeInForce.IOC))
    assert (r.status, r.cum_qty, r.leaves_qty, r.priority) == (OrderStatus.EXPIRED, 3, 0, 0)
    book = eng.book(S)
    assert (book.best_bid(), book.best_ask(), book.open_orders()) == (None, None, [])
    assert eng.execute(CancelOrder(S, "alice", r.order_id)).reject_code == (
        RejectCode.UNKNOWN_ORDER
    )


def test_marketable_limit_stops_at_its_own_price_and_rests_the_rest(eng: EngineLike) -> None:
    eng.execute(sell(100, 2, "bob"))
    eng.execute(sell(101, 2, "bob"))
    eng.execute(sell(102, 2, "bob"))
    r = eng.execute(buy(101, 10, "alice"))
    assert [(f.price, f.quantity) for f in r.fills] == [(100, 2), (101, 2)]
    assert (r.status, r.cum_qty, r.leaves_qty, r.priority) == (
        OrderStatus.PARTIALLY_FILLED,
        4,
        6,
        4,
    )
    book = eng.book(S)
    assert (book.best_bid(), book.best_ask()) == (101, 102)
    assert book.depth(Side.BUY, 5) == [Level(101, 6, 1)]
    check_book(book)


def test_reprice_through_the_spread_fills_at_the_makers_price(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice"))
    eng.execute(sell(103, 2, "bob"))
    r = eng.execute(AmendOrder(S, "alice", oid(1), new_price=110))
    assert r.fills == (Fill(oid(2), "bob", "", oid(1), 103, 2, 0, 2),)
    assert (r.price, r.cum_qty, r.leaves_qty) == (110, 2, 3)
    assert eng.book(S).best_bid() == 110


def test_cancel_after_full_fill_is_unknown_order(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice", client_order_id="a"))
    eng.execute(sell(100, 5, "bob"))
    before = book_state(eng.book(S))
    for cmd in (CancelOrder(S, "alice", oid(1)), CancelOrder(S, "alice", client_order_id="a")):
        r = eng.execute(cmd)
        assert (r.status, r.reject_code) == (OrderStatus.REJECTED, RejectCode.UNKNOWN_ORDER)
    assert book_state(eng.book(S)) == before


def test_amend_after_full_fill_is_unknown_order(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice", client_order_id="a"))
    eng.execute(sell(100, 5, "bob"))
    for cmd in (
        AmendOrder(S, "alice", oid(1), new_quantity=10),
        AmendOrder(S, "alice", client_order_id="a", new_price=99),
    ):
        assert eng.execute(cmd).reject_code == RejectCode.UNKNOWN_ORDER
    assert eng.book(S).open_orders() == []


def test_freed_order_id_is_not_confused_with_a_new_order(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice"))  # seq 1, cancelled below
    eng.execute(CancelOrder(S, "alice", oid(1)))
    eng.execute(buy(100, 5, "alice"))  # seq 3, filled below
    eng.execute(sell(100, 5, "bob"))
    r = eng.execute(buy(100, 5, "alice"))  # seq 5: a new id
    assert r.order_id == oid(5)
    for old in (oid(1), oid(3)):
        assert eng.execute(CancelOrder(S, "alice", old)).reject_code == RejectCode.UNKNOWN_ORDER
        assert eng.execute(AmendOrder(S, "alice", old, new_quantity=1)).reject_code == (
            RejectCode.UNKNOWN_ORDER
        )
    assert [o.order_id for o in eng.book(S).open_orders()] == [oid(5)]
    assert eng.book(S).open_orders()[0].leaves_qty == 5


def test_cancelling_the_best_level_leaves_no_phantom_best_price(eng: EngineLike) -> None:
    eng.execute(buy(99, 1, "alice"))
    eng.execute(buy(100, 1, "alice"))
    eng.execute(buy(100, 2, "bob"))
    eng.execute(sell(102, 1, "bob"))
    eng.execute(CancelOrder(S, "alice", oid(2)))
    eng.execute(CancelOrder(S, "bob", oid(3)))
    book = eng.book(S)
    assert book.best_bid() == 99
    assert book.quantity_at(Side.BUY, 100) == 0
    assert book.depth(Side.BUY, 5) == [Level(99, 1, 1)]
    r = eng.execute(sell(100, 1, "carol"))  # would trade with a phantom level at 100
    assert (r.status, r.fills) == (OrderStatus.NEW, ())
    eng.execute(CancelOrder(S, "bob", oid(4)))
    eng.execute(CancelOrder(S, "carol", oid(7)))
    assert book.best_ask() is None and book.depth(Side.SELL, 5) == []


def test_filling_the_best_level_leaves_no_phantom_best_price(eng: EngineLike) -> None:
    eng.execute(sell(101, 2, "bob"))
    eng.execute(sell(103, 2, "bob"))
    eng.execute(buy(101, 2, "alice"))
    book = eng.book(S)
    assert (book.best_ask(), book.depth(Side.SELL, 5)) == (103, [Level(103, 2, 1)])
    assert eng.execute(buy(102, 1, "carol")).status == OrderStatus.NEW


def test_one_order_sweeps_5000_resting_orders_in_fifo_order(eng: EngineLike) -> None:
    n = 5_000
    reports = eng.execute_batch([sell(100, 1, f"m{i % 7}") for i in range(n)])
    assert all(r.status == OrderStatus.NEW for r in reports)
    assert eng.book(S).depth(Side.SELL, 1) == [Level(100, n, n)]
    eng.execute(sell(101, 1, "late"))
    r = eng.execute(buy(100, n + 3, "taker"))
    assert [f.maker_order_id for f in r.fills] == [oid(seq) for seq in range(1, n + 1)]
    assert all((f.price, f.quantity, f.maker_leaves) == (100, 1, 0) for f in r.fills)
    assert (r.status, r.cum_qty, r.leaves_qty) == (OrderStatus.PARTIALLY_FILLED, n, 3)
    book = eng.book(S)
    assert book.quantity_at(Side.SELL, 100) == 0
    assert (book.best_ask(), book.best_bid()) == (101, 100)
    assert [o.order_id for o in book.open_orders()] == [oid(n + 2), oid(n + 1)]


def test_amend_of_partially_filled_order_keeps_filled_quantity(eng: EngineLike) -> None:
    eng.execute(sell(100, 10, "alice"))
    eng.execute(buy(100, 6, "bob"))
    r = eng.execute(AmendOrder(S, "alice", oid(1), new_price=101, new_quantity=9))
    assert (r.status, r.cum_qty, r.leaves_qty, r.priority) == (
        OrderStatus.PARTIALLY_FILLED,
        6,
        3,
        3,
    )
    [o] = eng.book(S).open_orders()
    assert (o.quantity, o.cum_qty, o.leaves_qty, o.price) == (9, 6, 3, 101)
    r = eng.execute(CancelOrder(S, "alice", oid(1)))
    assert (r.cum_qty, r.price) == (6, 101)
