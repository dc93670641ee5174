"""CancelOrder by id and by client order id; MassCancel."""

from __future__ import annotations

from shard.engine.types import (
    CancelOrder,
    MassCancel,
    OrderStatus,
    RejectCode,
    Report,
    SetSymbolStatus,
    Side,
    SymbolStatus,
)
from tests.shard.engine.flows import BTC, ETH, buy, order_id, sell
from tests.shard.engine.invariants import EngineLike, book_state

S = BTC.symbol
CANCELED, OK = OrderStatus.CANCELED, RejectCode.NONE


def oid(seq: int) -> int:
    return order_id(BTC, seq)


def test_cancel_by_order_id(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice", client_order_id="a1"))
    r = eng.execute(CancelOrder(S, "alice", order_id=oid(1)))
    assert r == Report(S, 2, oid(1), "a1", "alice", CANCELED, OK, 100, 0, 0, 0, (), (), Side.BUY)
    book = eng.book(S)
    assert book.open_orders() == [] and book.best_bid() is None
    assert book.depth(Side.BUY, 10) == []


def test_cancel_by_client_order_id(eng: EngineLike) -> None:
    eng.execute(sell(100, 5, "bob", client_order_id="x"))
    eng.execute(sell(101, 5, "alice", client_order_id="x"))
    r = eng.execute(CancelOrder(S, "alice", client_order_id="x"))
    assert r == Report(S, 3, oid(2), "x", "alice", CANCELED, OK, 101, 0, 0, 0, (), (), Side.SELL)
    assert [o.account for o in eng.book(S).open_orders()] == ["bob"]


def test_cancel_by_order_id_ignores_the_client_order_id(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice", client_order_id="a1"))
    eng.execute(buy(100, 5, "alice", client_order_id="a2"))
    r = eng.execute(CancelOrder(S, "alice", order_id=oid(1), client_order_id="a2"))
    assert (r.order_id, r.client_order_id) == (oid(1), "a1")
    assert [o.client_order_id for o in eng.book(S).open_orders()] == ["a2"]


def test_cancel_of_partially_filled_order_reports_its_cum(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice"))
    eng.execute(sell(100, 2, "bob"))
    r = eng.execute(CancelOrder(S, "alice", order_id=oid(1)))
    assert r == Report(S, 3, oid(1), "", "alice", CANCELED, OK, 100, 2, 0, 0, (), (), Side.BUY)


def test_cancel_of_another_accounts_order_is_unknown_order(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice", client_order_id="a1"))
    before = book_state(eng.book(S))
    r = eng.execute(CancelOrder(S, "bob", order_id=oid(1)))
    assert r == Report(
        S,
        2,
        oid(1),
        "",
        "bob",
        OrderStatus.REJECTED,
        RejectCode.UNKNOWN_ORDER,
        0,
        0,
        0,
        0,
        (),
        (),
        0,
    )
    r = eng.execute(CancelOrder(S, "bob", client_order_id="a1"))
    assert (r.seq, r.reject_code, r.client_order_id) == (3, RejectCode.UNKNOWN_ORDER, "a1")
    assert book_state(eng.book(S)) == before


def test_cancel_by_id_of_an_order_on_another_symbol_is_unknown(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice"))
    r = eng.execute(CancelOrder(ETH.symbol, "alice", order_id=oid(1)))
    assert (r.seq, r.reject_code) == (1, RejectCode.UNKNOWN_ORDER)
    assert len(eng.book(S).open_orders()) == 1


def test_cancel_is_allowed_while_halted(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice"))
    eng.execute(SetSymbolStatus(S, SymbolStatus.HALTED))
    r = eng.execute(CancelOrder(S, "alice", order_id=oid(1)))
    assert (r.status, r.seq) == (CANCELED, 3)
    assert eng.book(S).open_orders() == []


def _book_for_mass_cancel(eng: EngineLike) -> None:
    """alice: asks seq 1 (102) and 4 (101), bids seq 2 (99) and 5 (100); bob: 3, 6."""
    eng.execute(sell(102, 1, "alice"))
    eng.execute(buy(99, 1, "alice"))
    eng.execute(sell(101, 1, "bob"))
    eng.execute(sell(101, 1, "alice"))
    eng.execute(buy(100, 1, "alice"))
    eng.execute(buy(100, 1, "bob"))


def test_mass_cancel_cancels_all_of_the_account_in_ascending_id_order(eng: EngineLike) -> None:
    _book_for_mass_cancel(eng)
    r = eng.execute(MassCancel(S, "alice"))
    assert r == Report(
        S, 7, 0, "", "alice", CANCELED, OK, 0, 0, 0, 0, (), (oid(1), oid(2), oid(4), oid(5)), 0
    )
    book = eng.book(S)
    assert [o.order_id for o in book.open_orders()] == [oid(6), oid(3)]
    assert (book.best_bid(), book.best_ask()) == (100, 101)


def test_mass_cancel_of_one_side_keeps_the_other_side(eng: EngineLike) -> None:
    _book_for_mass_cancel(eng)
    r = eng.execute(MassCancel(S, "alice", Side.SELL))
    assert r.expired == (oid(1), oid(4))
    assert [o.order_id for o in eng.book(S).open_orders()] == [oid(5), oid(6), oid(2), oid(3)]


def test_mass_cancel_touches_neither_other_accounts_nor_other_symbols(eng: EngineLike) -> None:
    _book_for_mass_cancel(eng)
    eng.execute(buy(1000, 20, "alice", symbol=ETH.symbol))
    eth_before = book_state(eng.book(ETH.symbol))
    eng.execute(MassCancel(S, "alice"))
    assert {o.account for o in eng.book(S).open_orders()} == {"bob"}
    assert book_state(eng.book(ETH.symbol)) == eth_before


def test_mass_cancel_with_nothing_to_cancel_is_accepted_and_empty(eng: EngineLike) -> None:
    eng.execute(buy(100, 1, "bob"))
    r = eng.execute(MassCancel(S, "alice"))
    assert r == Report(S, 2, 0, "", "alice", CANCELED, OK, 0, 0, 0, 0, (), (), 0)
    assert len(eng.book(S).open_orders()) == 1


def test_mass_cancel_is_allowed_while_halted(eng: EngineLike) -> None:
    _book_for_mass_cancel(eng)
    eng.execute(SetSymbolStatus(S, SymbolStatus.HALTED))
    r = eng.execute(MassCancel(S, "bob"))
    assert (r.status, r.expired) == (CANCELED, (oid(3), oid(6)))


def test_mass_cancel_frees_client_order_ids(eng: EngineLike) -> None:
    eng.execute(buy(100, 1, "alice", client_order_id="k"))
    eng.execute(MassCancel(S, "alice"))
    assert eng.execute(buy(100, 1, "alice", client_order_id="k")).status == OrderStatus.NEW


def test_mass_cancel_includes_partially_filled_orders(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice"))
    eng.execute(sell(100, 2, "bob"))
    r = eng.execute(MassCancel(S, "alice", Side.BUY))
    assert r.expired == (oid(1),)
    assert eng.book(S).best_bid() is None


def test_cancel_by_unknown_order_id_does_not_fall_back_to_client_order_id(
    eng: EngineLike,
) -> None:
    eng.execute(buy(100, 5, "alice", client_order_id="a1"))
    r = eng.execute(CancelOrder(S, "alice", order_id=oid(7), client_order_id="a1"))
    assert (r.reject_code, r.order_id, r.client_order_id) == (
        RejectCode.UNKNOWN_ORDER, oid(7), "a1")  # fmt: skip
    assert len(eng.book(S).open_orders()) == 1
