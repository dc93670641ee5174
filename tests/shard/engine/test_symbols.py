"""Halted symbols, unknown symbols, add_symbol and SetSymbolStatus."""

from __future__ import annotations

import pytest

from shard.engine.types import (
    AmendOrder,
    CancelOrder,
    Command,
    MassCancel,
    OpenOrder,
    OrderStatus,
    PlaceOrder,
    RejectCode,
    Report,
    SetSymbolStatus,
    Side,
    StpMode,
    SymbolSpec,
    SymbolStatus,
)
from tests.shard.engine.flows import BTC, DEFAULT_SYMBOLS, ETH, UNKNOWN_SYMBOL, buy, order_id, sell
from tests.shard.engine.invariants import EngineFactory, EngineLike, book_state

S = BTC.symbol
U = UNKNOWN_SYMBOL
HALTED, TRADING = SymbolStatus.HALTED, SymbolStatus.TRADING


def oid(seq: int) -> int:
    return order_id(BTC, seq)


def test_set_symbol_status_report(eng: EngineLike) -> None:
    r = eng.execute(SetSymbolStatus(S, HALTED))
    assert r == Report(S, 1, 0, "", "", OrderStatus.NEW, RejectCode.NONE, 0, 0, 0, 0, (), (), 0)
    r = eng.execute(SetSymbolStatus(S, HALTED))  # idempotent, still sequenced
    assert (r.seq, r.status, r.reject_code) == (2, OrderStatus.NEW, RejectCode.NONE)


def test_halted_symbol_rejects_place_and_amend(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice"))
    eng.execute(SetSymbolStatus(S, HALTED))
    before = book_state(eng.book(S))
    assert eng.execute(sell(100, 5, "bob")).reject_code == RejectCode.SYMBOL_HALTED
    r = eng.execute(AmendOrder(S, "alice", oid(1), new_quantity=3))
    assert (r.seq, r.reject_code) == (4, RejectCode.SYMBOL_HALTED)
    assert book_state(eng.book(S)) == before


def test_halt_applies_to_one_symbol_only(eng: EngineLike) -> None:
    eng.execute(SetSymbolStatus(S, HALTED))
    r = eng.execute(buy(1000, 20, "alice", symbol=ETH.symbol))
    assert (r.status, r.seq) == (OrderStatus.NEW, 1)


def test_resume_after_halt_trades_again(eng: EngineLike) -> None:
    eng.execute(buy(100, 5, "alice"))
    eng.execute(SetSymbolStatus(S, HALTED))
    eng.execute(SetSymbolStatus(S, TRADING))
    r = eng.execute(sell(100, 5, "bob"))
    assert (r.seq, r.status, r.cum_qty) == (4, OrderStatus.FILLED, 5)
    r = eng.execute(buy(99, 1, "alice"))
    assert (r.status, r.order_id) == (OrderStatus.NEW, oid(5))


def test_book_spec_follows_the_symbol_status(eng: EngineLike) -> None:
    eng.execute(SetSymbolStatus(S, HALTED))
    assert eng.book(S).spec == BTC._replace(status=HALTED)
    eng.execute(SetSymbolStatus(S, TRADING))
    assert eng.book(S).spec == BTC


def test_symbol_added_halted_rejects_orders(new_engine: EngineFactory) -> None:
    engine = new_engine()
    engine.add_symbol(BTC._replace(status=HALTED))
    assert engine.execute(buy(100, 1)).reject_code == RejectCode.SYMBOL_HALTED
    engine.execute(SetSymbolStatus(S, TRADING))
    assert engine.execute(buy(100, 1)).status == OrderStatus.NEW


UNKNOWN_CMDS: list[tuple[Command, Report]] = [
    (
        PlaceOrder(U, "alice", Side.BUY, 3, 100, client_order_id="p"),
        Report(
            U,
            0,
            0,
            "p",
            "alice",
            OrderStatus.REJECTED,
            RejectCode.UNKNOWN_SYMBOL,
            100,
            0,
            0,
            0,
            (),
            (),
            Side.BUY,
        ),
    ),
    (
        CancelOrder(U, "alice", 77, "q"),
        Report(
            U,
            0,
            77,
            "q",
            "alice",
            OrderStatus.REJECTED,
            RejectCode.UNKNOWN_SYMBOL,
            0,
            0,
            0,
            0,
            (),
            (),
            0,
        ),
    ),
    (
        AmendOrder(U, "bob", 78, "r", 100, 5),
        Report(
            U,
            0,
            78,
            "r",
            "bob",
            OrderStatus.REJECTED,
            RejectCode.UNKNOWN_SYMBOL,
            0,
            0,
            0,
            0,
            (),
            (),
            0,
        ),
    ),
    (
        MassCancel(U, "bob", Side.SELL),
        Report(
            U,
            0,
            0,
            "",
            "bob",
            OrderStatus.REJECTED,
            RejectCode.UNKNOWN_SYMBOL,
            0,
            0,
            0,
            0,
            (),
            (),
            0,
        ),
    ),
    (
        SetSymbolStatus(U, HALTED),
        Report(
            U, 0, 0, "", "", OrderStatus.REJECTED, RejectCode.UNKNOWN_SYMBOL, 0, 0, 0, 0, (), (), 0
        ),
    ),
]


@pytest.mark.parametrize(
    ("cmd", "expected"), UNKNOWN_CMDS, ids=[type(c).__name__ for c, _ in UNKNOWN_CMDS]
)
def test_unknown_symbol_gets_seq_0_and_changes_nothing(
    eng: EngineLike, cmd: Command, expected: Report
) -> None:
    eng.execute(buy(100, 5, "alice"))
    before = {
        s.symbol: (book_state(eng.book(s.symbol)), eng.book(s.symbol).last_seq)
        for s in DEFAULT_SYMBOLS
    }
    assert eng.execute(cmd) == expected
    assert {
        s.symbol: (book_state(eng.book(s.symbol)), eng.book(s.symbol).last_seq)
        for s in DEFAULT_SYMBOLS
    } == before
    with pytest.raises(KeyError):
        eng.book(U)
    assert eng.execute(buy(99, 1, "alice")).seq == 2


def test_add_symbol_continues_from_last_seq(new_engine: EngineFactory) -> None:
    engine = new_engine()
    spec = SymbolSpec("SOL-USDT", symbol_id=7)
    engine.add_symbol(spec, last_seq=41)
    assert engine.book("SOL-USDT").last_seq == 41
    r = engine.execute(buy(100, 1, symbol="SOL-USDT"))
    assert (r.seq, r.order_id, r.priority) == (42, 7 << 40 | 42, 42)


def test_add_symbol_restores_open_orders_in_priority_order(new_engine: EngineFactory) -> None:
    engine = new_engine()
    orders = [
        OpenOrder(oid(3), "bob", "b", Side.BUY, 100, 5, 1, 4, 3, StpMode.NONE, False),
        OpenOrder(oid(2), "alice", "", Side.BUY, 100, 2, 0, 2, 7, StpMode.EXPIRE_MAKER, False),
        OpenOrder(oid(5), "carol", "c", Side.SELL, 102, 3, 0, 3, 5, StpMode.NONE, True),
    ]
    engine.add_symbol(BTC, last_seq=9, open_orders=orders)
    book = engine.book(S)
    assert book.open_orders() == orders
    assert book.depth(Side.BUY, 5) == [(100, 6, 2)]
    r = engine.execute(sell(100, 5, "dave"))
    assert [(f.maker_order_id, f.quantity, f.maker_leaves) for f in r.fills] == [
        (oid(3), 4, 0),
        (oid(2), 1, 1),
    ]
    assert engine.execute(buy(99, 1, "bob", client_order_id="b")).status == OrderStatus.NEW
    assert engine.execute(buy(99, 1, "carol", client_order_id="c")).reject_code == (
        RejectCode.DUPLICATE_CLIENT_ORDER_ID
    )


def test_symbols_have_independent_sequences(eng: EngineLike) -> None:
    e = ETH.symbol
    assert [
        eng.execute(c).seq
        for c in (
            buy(100, 1),
            buy(1000, 20, symbol=e),
            buy(101, 1),
            buy(1005, 20, symbol=e),
            buy(1010, 20, symbol=e),
        )
    ] == [1, 1, 2, 2, 3]
    assert (eng.book(S).last_seq, eng.book(e).last_seq) == (2, 3)
