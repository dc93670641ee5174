"""Hypothesis properties: engine == reference, conservation, determinism, recovery."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from shard.engine.types import (
    AmendOrder,
    CancelOrder,
    Command,
    MassCancel,
    OrderType,
    PlaceOrder,
    Report,
    SetSymbolStatus,
    Side,
    StpMode,
    SymbolSpec,
    SymbolStatus,
    TimeInForce,
)
from tests.shard.engine.conftest import engine_factory
from tests.shard.engine.flows import DEFAULT_SYMBOLS, order_id
from tests.shard.engine.invariants import EngineLike, Ledger, book_state
from tests.shard.engine.reference import ReferenceEngine

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)
ACCOUNTS = st.sampled_from(("a", "b", "c"))
CLIENT_IDS = st.sampled_from(("", "", "x", "y"))


def _spec(draw: st.DrawFn) -> SymbolSpec:
    return draw(st.sampled_from(DEFAULT_SYMBOLS[:1] * 3 + DEFAULT_SYMBOLS[1:]))


def _price(draw: st.DrawFn, spec: SymbolSpec) -> int:
    return draw(st.integers(96, 104)) * spec.tick_size


def _quantity(draw: st.DrawFn, spec: SymbolSpec) -> int:
    lots = spec.min_quantity // spec.lot_size
    return draw(st.integers(max(lots - 1, 0), lots + 6)) * spec.lot_size


def _reference(draw: st.DrawFn, spec: SymbolSpec) -> tuple[int, str]:
    """(order_id, client_order_id) of a cancel or amend: mostly low seqs that exist."""
    seq = draw(st.integers(0, 40))
    return (order_id(spec, seq) if seq else 0), draw(CLIENT_IDS)


@st.composite
def commands(draw: st.DrawFn) -> Command:
    spec = _spec(draw)
    kind = draw(st.sampled_from(["place"] * 6 + ["cancel"] * 2 + ["amend"] * 2 + ["mass", "halt"]))
    account = draw(ACCOUNTS)
    if kind == "place":
        order_type = draw(st.sampled_from((OrderType.LIMIT,) * 4 + (OrderType.MARKET,)))
        price = _price(draw, spec) if order_type == OrderType.LIMIT else 0
        return PlaceOrder(
            spec.symbol, account, draw(st.sampled_from(Side)), _quantity(draw, spec), price,
            order_type, draw(st.sampled_from(TimeInForce)), draw(st.booleans()),
            draw(st.sampled_from(StpMode)), draw(CLIENT_IDS),
        )  # fmt: skip
    if kind in ("cancel", "amend"):
        oid, coid = _reference(draw, spec)
        if kind == "cancel":
            return CancelOrder(spec.symbol, account, oid, coid)
        new_price = draw(st.sampled_from((0, _price(draw, spec))))
        new_quantity = draw(st.sampled_from((0, _quantity(draw, spec))))
        return AmendOrder(spec.symbol, account, oid, coid, new_price, new_quantity)
    if kind == "mass":
        return MassCancel(spec.symbol, account, draw(st.sampled_from((None, *Side))))
    status = draw(st.sampled_from((SymbolStatus.TRADING,) * 2 + (SymbolStatus.HALTED,)))
    return SetSymbolStatus(spec.symbol, status)


COMMAND_LISTS = st.lists(commands(), max_size=60)


def _fresh(name: str) -> EngineLike:
    engine = engine_factory(name)()
    for spec in DEFAULT_SYMBOLS:
        engine.add_symbol(spec)
    return engine


def _books(engine: EngineLike) -> list[tuple[int, tuple[object, ...]]]:
    return [
        (engine.book(s.symbol).last_seq, book_state(engine.book(s.symbol))) for s in DEFAULT_SYMBOLS
    ]


def _run(engine: EngineLike, cmds: Sequence[Command]) -> list[Report]:
    return [engine.execute(cmd) for cmd in cmds]


@PROPERTY_SETTINGS
@given(COMMAND_LISTS)
def test_engine_reports_equal_reference_reports(cmds: list[Command]) -> None:
    engine, reference = _fresh("engine"), _fresh("reference")
    for i, cmd in enumerate(cmds):
        got, want = engine.execute(cmd), reference.execute(cmd)
        assert got == want, f"command #{i} {cmd!r}:\n engine    {got!r}\n reference {want!r}"
    assert _books(engine) == _books(reference)


@PROPERTY_SETTINGS
@given(COMMAND_LISTS)
def test_engine_conserves_quantity_and_keeps_invariants(cmds: list[Command]) -> None:
    engine = _fresh("engine")
    ledger = Ledger(engine, DEFAULT_SYMBOLS)
    for cmd in cmds:
        ledger.step(cmd)
    ledger.check_conservation()


@PROPERTY_SETTINGS
@given(COMMAND_LISTS)
def test_engine_is_deterministic(cmds: list[Command]) -> None:
    one, two = _fresh("engine"), _fresh("engine")
    assert _run(one, cmds) == two.execute_batch(cmds)
    assert _books(one) == _books(two)


@PROPERTY_SETTINGS
@given(COMMAND_LISTS, COMMAND_LISTS)
def test_book_rebuilt_from_open_orders_behaves_identically(
    prefix: list[Command], suffix: list[Command]
) -> None:
    original = _fresh("engine")
    _run(original, prefix)
    rebuilt_engine, rebuilt_reference = engine_factory("engine")(), ReferenceEngine()
    for spec in DEFAULT_SYMBOLS:
        book = original.book(spec.symbol)
        for rebuilt in (rebuilt_engine, rebuilt_reference):
            rebuilt.add_symbol(book.spec, book.last_seq, book.open_orders())
    assert _books(rebuilt_engine) == _books(original)
    want = _run(original, suffix)
    assert _run(rebuilt_engine, suffix) == want
    assert _run(rebuilt_reference, suffix) == want
    assert _books(rebuilt_engine) == _books(original) == _books(rebuilt_reference)
