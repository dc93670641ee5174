"""Invariants after every step of random flows, and checks that the checkers catch breakage."""

from __future__ import annotations

import pytest

from shard.engine.types import Level, OpenOrder, Side, StpMode, SymbolSpec
from tests.shard.engine.conftest import engine_factory
from tests.shard.engine.flows import BTC, DEFAULT_SYMBOLS, random_flow
from tests.shard.engine.invariants import EngineFactory, Ledger, check_book

SEEDS = range(101, 105)
N_COMMANDS = 3_000


def _run_flow_with_invariants(factory: EngineFactory, seed: int) -> Ledger:
    engine = factory()
    for spec in DEFAULT_SYMBOLS:
        engine.add_symbol(spec)
    ledger = Ledger(engine, DEFAULT_SYMBOLS)
    for i, cmd in enumerate(random_flow(seed, N_COMMANDS)):
        try:
            ledger.step(cmd)
        except AssertionError as exc:
            raise AssertionError(f"invariant broken at command #{i}: {cmd!r}: {exc}") from exc
    ledger.check_conservation()
    return ledger


@pytest.mark.parametrize("seed", SEEDS)
def test_invariants_hold_after_every_step_of_engine_flow(seed: int) -> None:
    ledger = _run_flow_with_invariants(engine_factory("engine"), seed)
    assert len(ledger.orders) > 500  # the flow really placed orders


def test_invariants_hold_after_every_step_of_reference_flow() -> None:
    _run_flow_with_invariants(engine_factory("reference"), SEEDS[0])


# --- the checkers themselves: a broken book must be caught ------------------------------


def _order(
    seq: int, side: Side, price: int, leaves: int, account: str = "a", coid: str = ""
) -> OpenOrder:
    return OpenOrder(
        1 << 40 | seq, account, coid, side, price, leaves, 0, leaves, seq, StpMode.NONE, False
    )


class FakeBook:
    """A book that reports whatever it is given: depth is derived unless overridden."""

    def __init__(
        self,
        orders: list[OpenOrder],
        depth: dict[Side, list[Level]] | None = None,
        last_seq: int = 100,
    ) -> None:
        self.orders = orders
        self.forced_depth = depth or {}
        self.last_seq = last_seq
        self.spec = SymbolSpec(BTC.symbol, BTC.symbol_id)

    def best_bid(self) -> int | None:
        levels = self.depth(Side.BUY, 1)
        return levels[0].price if levels else None

    def best_ask(self) -> int | None:
        levels = self.depth(Side.SELL, 1)
        return levels[0].price if levels else None

    def quantity_at(self, side: Side, price: int) -> int:
        return sum(lv.quantity for lv in self.depth(side, 10**6) if lv.price == price)

    def depth(self, side: Side, n: int) -> list[Level]:
        if side in self.forced_depth:
            return self.forced_depth[side][:n]
        levels: dict[int, Level] = {}
        for o in self.orders:
            if o.side == side:
                lv = levels.get(o.price, Level(o.price, 0, 0))
                levels[o.price] = Level(o.price, lv.quantity + o.leaves_qty, lv.order_count + 1)
        return sorted(levels.values(), key=lambda lv: lv.price, reverse=side == Side.BUY)[:n]

    def open_orders(self) -> list[OpenOrder]:
        return self.orders


def test_check_book_accepts_a_sane_book() -> None:
    check_book(
        FakeBook(
            [_order(2, Side.BUY, 100, 5), _order(3, Side.BUY, 100, 1), _order(1, Side.SELL, 101, 2)]
        )
    )


@pytest.mark.parametrize(
    ("orders", "depth"),
    [
        pytest.param(
            [_order(1, Side.BUY, 101, 5), _order(2, Side.SELL, 101, 5)], None, id="crossed"
        ),
        pytest.param(
            [_order(3, Side.BUY, 100, 5), _order(2, Side.BUY, 100, 1)], None, id="fifo-broken"
        ),
        pytest.param(
            [_order(1, Side.BUY, 100, 5)],
            {Side.BUY: [Level(100, 4, 1)]},
            id="level-quantity-not-conserved",
        ),
        pytest.param(
            [_order(1, Side.BUY, 100, 5)],
            {Side.BUY: [Level(100, 5, 1), Level(99, 0, 0)]},
            id="empty-level",
        ),
        pytest.param(
            [_order(1, Side.BUY, 100, 5, coid="x"), _order(2, Side.BUY, 99, 5, coid="x")],
            None,
            id="duplicate-client-order-id",
        ),
        pytest.param(
            [_order(1, Side.SELL, 101, 5), _order(2, Side.BUY, 100, 5)], None, id="asks-before-bids"
        ),
        pytest.param([_order(1, Side.BUY, 100, 0)], {Side.BUY: []}, id="zero-leaves"),
        pytest.param([_order(200, Side.BUY, 100, 1)], None, id="priority-beyond-last-seq"),
    ],
)
def test_check_book_catches_a_broken_book(
    orders: list[OpenOrder], depth: dict[Side, list[Level]] | None
) -> None:
    with pytest.raises(AssertionError):
        check_book(FakeBook(orders, depth))
