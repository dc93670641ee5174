"""Sequence numbers, order ids, client order id uniqueness and book queries."""

from __future__ import annotations

from shard.engine.types import (
    ORDER_ID_SHIFT,
    AmendOrder,
    CancelOrder,
    Command,
    Level,
    MassCancel,
    OrderStatus,
    RejectCode,
    SetSymbolStatus,
    Side,
    SymbolStatus,
)
from tests.shard.engine.flows import BTC, ETH, buy, market, order_id, sell
from tests.shard.engine.invariants import EngineFactory, EngineLike

S = BTC.symbol


def oid(seq: int) -> int:
    return order_id(BTC, seq)


def test_every_command_takes_the_next_seq_rejects_included(eng: EngineLike) -> None:
    cmds: list[Command] = [
        buy(100, 5, "alice"),  # accepted
        buy(0, 5, "alice"),  # rejected
        CancelOrder(S, "bob", oid(1)),  # rejected: not bob's
        AmendOrder(S, "alice", oid(1), new_quantity=3),
        SetSymbolStatus(S, SymbolStatus.HALTED),
        sell(100, 1, "bob"),  # rejected: halted
        SetSymbolStatus(S, SymbolStatus.TRADING),
        MassCancel(S, "carol"),
        market(Side.SELL, 1, "bob"),
        CancelOrder(S, "alice", oid(1)),
    ]
    reports = eng.execute_batch(cmds)
    assert [r.seq for r in reports] == list(range(1, 11))
    assert eng.book(S).last_seq == 10


def test_execute_batch_equals_execute_one_by_one(new_engine: EngineFactory) -> None:
    cmds: list[Command] = [
        buy(100, 5, "alice"),
        sell(99, 7, "bob"),
        buy(100, 1, "carol", client_order_id="c"),
        CancelOrder(S, "carol", client_order_id="c"),
        market(Side.BUY, 9, "alice"),
    ]
    one, two = new_engine(), new_engine()
    for engine in (one, two):
        engine.add_symbol(BTC)
    assert one.execute_batch(cmds) == [two.execute(c) for c in cmds]


def test_order_id_is_symbol_id_shifted_or_seq(eng: EngineLike) -> None:
    eng.execute(buy(100, 1, "alice"))
    eng.execute(buy(0, 1, "alice"))
    assert eng.execute(buy(100, 1, "alice")).order_id == 1 << ORDER_ID_SHIFT | 3
    assert eng.execute(buy(1000, 20, "alice", symbol=ETH.symbol)).order_id == (
        2 << ORDER_ID_SHIFT | 1
    )


def test_rejected_placement_has_order_id_zero(eng: EngineLike) -> None:
    r = eng.execute(buy(-5, 1, "alice", client_order_id="z"))
    assert (r.order_id, r.client_order_id, r.price) == (0, "z", -5)


def test_duplicate_client_order_id_among_open_orders_is_rejected(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice", client_order_id="dup"))
    r = eng.execute(sell(105, 5, "alice", client_order_id="dup"))
    assert (r.reject_code, r.order_id, r.client_order_id) == (
        RejectCode.DUPLICATE_CLIENT_ORDER_ID,
        0,
        "dup",
    )


def test_same_client_order_id_is_fine_for_other_accounts(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice", client_order_id="dup"))
    assert eng.execute(buy(100, 5, "bob", client_order_id="dup")).status == OrderStatus.NEW


def test_empty_client_order_ids_never_collide(eng: EngineLike) -> None:
    for price in (100, 100, 101):
        assert eng.execute(buy(price, 1, "alice")).status == OrderStatus.NEW


def test_client_order_id_is_reusable_after_fill(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice", client_order_id="k"))
    eng.execute(sell(100, 5, "bob"))
    assert eng.execute(buy(100, 1, "alice", client_order_id="k")).status == OrderStatus.NEW


def test_client_order_id_is_reusable_after_cancel(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice", client_order_id="k"))
    eng.execute(CancelOrder(S, "alice", client_order_id="k"))
    r = eng.execute(buy(101, 1, "alice", client_order_id="k"))
    assert (r.status, r.order_id) == (OrderStatus.NEW, oid(3))
    assert eng.execute(CancelOrder(S, "alice", client_order_id="k")).order_id == oid(3)


def test_taker_that_fills_immediately_does_not_hold_its_client_order_id(eng: EngineLike) -> None:
    eng.execute(sell(100, 5, "bob"))
    eng.execute(buy(100, 5, "alice", client_order_id="k"))
    assert eng.execute(buy(90, 1, "alice", client_order_id="k")).status == OrderStatus.NEW


def test_best_bid_and_ask(eng: EngineLike) -> None:
    book = eng.book(S)
    assert (book.best_bid(), book.best_ask()) == (None, None)
    for price in (98, 100, 99):
        eng.execute(buy(price, 1, "alice"))
    for price in (103, 101, 102):
        eng.execute(sell(price, 1, "bob"))
    assert (book.best_bid(), book.best_ask()) == (100, 101)


def test_quantity_at_sums_leaves_and_is_zero_elsewhere(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice"))
    eng.execute(buy(100, 7, "bob"))
    eng.execute(sell(100, 2, "carol"))
    book = eng.book(S)
    assert book.quantity_at(Side.BUY, 100) == 10
    assert book.quantity_at(Side.SELL, 100) == 0
    assert book.quantity_at(Side.BUY, 101) == 0


def test_depth_top_n_best_first_with_order_counts(eng: EngineLike) -> None:
    for price, qty in ((98, 1), (100, 2), (99, 3), (100, 4), (97, 5)):
        eng.execute(buy(price, qty, "alice"))
    for price, qty in ((103, 1), (101, 2), (101, 3)):
        eng.execute(sell(price, qty, "bob"))
    book = eng.book(S)
    assert book.depth(Side.BUY, 3) == [Level(100, 6, 2), Level(99, 3, 1), Level(98, 1, 1)]
    assert book.depth(Side.SELL, 10) == [Level(101, 5, 2), Level(103, 1, 1)]
    assert book.depth(Side.BUY, 0) == []
    assert len(book.depth(Side.BUY, 4)) == 4


def test_depth_counts_leaves_of_partially_filled_orders(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice"))
    eng.execute(buy(100, 5, "bob"))
    eng.execute(sell(100, 7, "carol"))
    assert eng.book(S).depth(Side.BUY, 1) == [Level(100, 3, 1)]


def test_open_orders_bids_then_asks_best_first_fifo_inside(eng: EngineLike) -> None:
    eng.execute(sell(102, 1, "a"))  # 1
    eng.execute(buy(99, 1, "b"))  # 2
    eng.execute(sell(101, 1, "c"))  # 3
    eng.execute(buy(100, 1, "d"))  # 4
    eng.execute(buy(99, 1, "e"))  # 5
    eng.execute(sell(101, 1, "f"))  # 6
    orders = eng.book(S).open_orders()
    assert [o.order_id for o in orders] == [oid(4), oid(2), oid(5), oid(3), oid(6), oid(1)]
    assert [o.priority for o in orders] == [4, 2, 5, 3, 6, 1]
