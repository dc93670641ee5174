"""Seeded random command flows for the matching engine, and small command builders.

``random_flow(seed, n)`` returns ``n`` commands mixing every order type, time in force,
post-only, STP mode, few accounts (so self-trades happen), cancels and amends of existing
and non-existing ids and client order ids, mass cancels, invalid fields, int64 overflows,
halts and resumes, and commands for an unknown symbol. The same seed always gives the
same list. The generator predicts the order id a placement would get (every command to a
known symbol takes the next seq) so cancels and amends often hit live orders.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, cast

from shard.engine.types import (
    INT64_MAX,
    ORDER_ID_SHIFT,
    AmendOrder,
    CancelOrder,
    Command,
    MassCancel,
    OrderType,
    PlaceOrder,
    SetSymbolStatus,
    Side,
    StpMode,
    SymbolSpec,
    SymbolStatus,
    TimeInForce,
)

BTC = SymbolSpec("BTC-USDT", symbol_id=1)  # tick 1, lot 1, quantities up to INT64_MAX
ETH = SymbolSpec(
    "ETH-USDT", symbol_id=2, tick_size=5, lot_size=10, min_quantity=20, max_quantity=5_000
)
DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = (BTC, ETH)
UNKNOWN_SYMBOL = "NOPE-USDT"
ACCOUNTS = ("alice", "bob", "carol")
MID_TICKS = 200  # the mid price, in ticks


def order_id(spec: SymbolSpec, seq: int) -> int:
    return spec.symbol_id << ORDER_ID_SHIFT | seq


def buy(
    price: int, quantity: int, account: str = "alice", symbol: str = BTC.symbol, **kw: Any
) -> PlaceOrder:
    """A BUY; ``price=0`` with ``order_type=OrderType.MARKET`` for a market order."""
    return PlaceOrder(symbol, account, Side.BUY, quantity, price, **kw)


def sell(
    price: int, quantity: int, account: str = "alice", symbol: str = BTC.symbol, **kw: Any
) -> PlaceOrder:
    return PlaceOrder(symbol, account, Side.SELL, quantity, price, **kw)


def market(
    side: Side, quantity: int, account: str = "alice", symbol: str = BTC.symbol, **kw: Any
) -> PlaceOrder:
    return PlaceOrder(symbol, account, side, quantity, 0, OrderType.MARKET, **kw)


class _Flow:
    """The generator's knowledge: seqs, halts, and orders that may be open."""

    def __init__(self, seed: int, symbols: Sequence[SymbolSpec]) -> None:
        self.rng = random.Random(seed)
        self.symbols = list(symbols)
        self.seq = {s.symbol: 0 for s in symbols}
        self.halted = {s.symbol: s.status == SymbolStatus.HALTED for s in symbols}
        self.placed: dict[str, list[tuple[int, str, str]]] = {s.symbol: [] for s in symbols}
        self.mid = {s.symbol: MID_TICKS * s.tick_size for s in symbols}

    def next(self) -> Command:
        rng = self.rng
        if rng.random() < 0.02:
            return self._for_unknown_symbol()
        spec = rng.choice(self.symbols)
        self.seq[spec.symbol] += 1
        if rng.random() < 0.01:
            self.mid[spec.symbol] += rng.choice((-3, 3)) * spec.tick_size
        if rng.random() < (0.3 if self.halted[spec.symbol] else 0.005):
            self.halted[spec.symbol] = not self.halted[spec.symbol]
            status = SymbolStatus.HALTED if self.halted[spec.symbol] else SymbolStatus.TRADING
            return SetSymbolStatus(spec.symbol, status)
        kind = rng.choices(("place", "cancel", "amend", "mass"), (62, 16, 19, 3))[0]
        if kind == "place":
            return self._place(spec)
        if kind == "mass":
            return self._mass_cancel(spec)
        return self._cancel(spec) if kind == "cancel" else self._amend(spec)

    def _for_unknown_symbol(self) -> Command:
        account = self.rng.choice(ACCOUNTS)
        return self.rng.choice(
            (
                PlaceOrder(UNKNOWN_SYMBOL, account, Side.BUY, 1, 100),
                CancelOrder(UNKNOWN_SYMBOL, account, order_id=12345),
                AmendOrder(UNKNOWN_SYMBOL, account, client_order_id="c1", new_quantity=3),
                MassCancel(UNKNOWN_SYMBOL, account),
                SetSymbolStatus(UNKNOWN_SYMBOL, SymbolStatus.HALTED),
            )
        )

    def _price(self, spec: SymbolSpec, side: Side | None = None) -> int:
        """Mostly on the side's own half of the book, sometimes crossing the mid."""
        ticks = self.rng.randint(-3, 10) if side is not None else self.rng.randint(-8, 8)
        sign = -1 if side == Side.BUY else 1
        return self.mid[spec.symbol] + sign * ticks * spec.tick_size

    def _quantity(self, spec: SymbolSpec) -> int:
        lots = max(spec.min_quantity // spec.lot_size, 1)
        return spec.lot_size * self.rng.randint(lots, lots + 12)

    def _client_order_id(self) -> str:
        return "" if self.rng.random() < 0.5 else f"c{self.rng.randint(0, 23)}"

    def _place(self, spec: SymbolSpec) -> PlaceOrder:
        rng = self.rng
        order_type = OrderType.MARKET if rng.random() < 0.12 else OrderType.LIMIT
        tif = rng.choices((TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK), (70, 15, 15))[0]
        side = rng.choice((Side.BUY, Side.SELL))
        cmd = PlaceOrder(
            spec.symbol,
            rng.choice(ACCOUNTS),
            side,
            self._quantity(spec),
            self._price(spec, side) if order_type == OrderType.LIMIT else 0,
            order_type,
            tif,
            post_only=rng.random() < 0.12,
            stp=rng.choices(list(StpMode), (40, 20, 20, 20))[0],
            client_order_id=self._client_order_id(),
        )
        if rng.random() < 0.06:
            cmd = self._invalid(spec, cmd)
        elif rng.random() < 0.015:
            cmd = self._huge(spec, cmd)
        self.placed[spec.symbol].append(
            (order_id(spec, self.seq[spec.symbol]), cmd.account, cmd.client_order_id)
        )
        return cmd

    def _invalid(self, spec: SymbolSpec, cmd: PlaceOrder) -> PlaceOrder:
        """One bad field (or an invalid combination)."""
        tick, lot = spec.tick_size, spec.lot_size
        return self.rng.choice(
            (
                cmd._replace(account=""),
                cmd._replace(side=cast(Side, 0)),
                cmd._replace(side=cast(Side, 3)),
                cmd._replace(order_type=cast(OrderType, 9)),
                cmd._replace(time_in_force=cast(TimeInForce, 0)),
                cmd._replace(stp=cast(StpMode, 7)),
                cmd._replace(client_order_id="x" * 65),
                cmd._replace(post_only=True, time_in_force=TimeInForce.IOC),
                cmd._replace(post_only=True, order_type=OrderType.MARKET, price=0),
                cmd._replace(order_type=OrderType.LIMIT, price=0),
                cmd._replace(order_type=OrderType.LIMIT, price=-tick),
                cmd._replace(order_type=OrderType.LIMIT, price=INT64_MAX + 1),
                cmd._replace(order_type=OrderType.LIMIT, price=cmd.price + 1 if tick > 1 else 0),
                cmd._replace(order_type=OrderType.MARKET, price=tick),
                cmd._replace(quantity=0),
                cmd._replace(quantity=-lot),
                cmd._replace(quantity=INT64_MAX + 1),
                cmd._replace(quantity=cmd.quantity + 1 if lot > 1 else 0),
                cmd._replace(quantity=spec.min_quantity - lot),
                cmd._replace(quantity=(spec.max_quantity // lot + 1) * lot),
            )
        )

    def _huge(self, spec: SymbolSpec, cmd: PlaceOrder) -> PlaceOrder:
        """Quantities near int64: notional and level-quantity overflows (resting far away)."""
        big = (2**62 // spec.lot_size) * spec.lot_size
        return self.rng.choice(
            (
                cmd._replace(
                    side=Side.BUY,
                    order_type=OrderType.LIMIT,
                    price=spec.tick_size,
                    time_in_force=TimeInForce.GTC,
                    post_only=False,
                    quantity=big,
                ),
                cmd._replace(order_type=OrderType.LIMIT, quantity=big),
            )
        )

    def _target(self, spec: SymbolSpec) -> tuple[str, int, str]:
        """(account, order_id, client_order_id) of a cancel or amend."""
        rng = self.rng
        recent = self.placed[spec.symbol][-40:]
        if recent and rng.random() < 0.8:
            oid, account, coid = rng.choice(recent)
            if rng.random() < 0.1:
                account = rng.choice(ACCOUNTS)
            if coid and rng.random() < 0.35:
                return account, 0, coid
            return account, oid, ""
        return rng.choice(
            (
                (rng.choice(ACCOUNTS), order_id(spec, rng.randint(1, 10**6)), ""),
                (rng.choice(ACCOUNTS), 0, f"c{rng.randint(0, 9)}"),
                (rng.choice(ACCOUNTS), 0, ""),
                ("", order_id(spec, 1), ""),
            )
        )

    def _cancel(self, spec: SymbolSpec) -> CancelOrder:
        account, oid, coid = self._target(spec)
        return CancelOrder(spec.symbol, account, oid, coid)

    def _amend(self, spec: SymbolSpec) -> AmendOrder:
        rng = self.rng
        account, oid, coid = self._target(spec)
        new_price = self._price(spec) if rng.random() < 0.5 else 0
        new_quantity = self._quantity(spec) if rng.random() < 0.6 else 0
        if rng.random() < 0.1:
            new_price, new_quantity = rng.choice(
                (
                    (-spec.tick_size, 0),
                    (spec.tick_size + 1 if spec.tick_size > 1 else -1, 0),
                    (0, -spec.lot_size),
                    (0, spec.lot_size),
                    (0, spec.min_quantity),
                    (INT64_MAX // 2, 0),
                    (0, spec.max_quantity),
                    (INT64_MAX + 1, 0),
                )
            )
        return AmendOrder(spec.symbol, account, oid, coid, new_price, new_quantity)

    def _mass_cancel(self, spec: SymbolSpec) -> MassCancel:
        rng = self.rng
        side = rng.choice((None, None, Side.BUY, Side.SELL, cast(Side, 5)))
        account = "" if rng.random() < 0.05 else rng.choice(ACCOUNTS)
        return MassCancel(spec.symbol, account, side)


def random_flow(
    seed: int, n: int, symbols: Sequence[SymbolSpec] = DEFAULT_SYMBOLS
) -> list[Command]:
    """``n`` commands for ``symbols`` (plus a few for an unknown symbol), fixed by ``seed``."""
    flow = _Flow(seed, symbols)
    return [flow.next() for _ in range(n)]
