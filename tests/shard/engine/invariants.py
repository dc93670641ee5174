"""Invariants of a matching engine, checked after every command of a flow.

``check_book(book)`` checks one book on its own: never crossed, levels consistent with
the open orders (no empty levels), FIFO inside a level, unique client order ids, sane
open orders. ``Ledger`` follows the reports of a flow and checks what only the history
can tell: gap-free seqs, fills against known makers at their prices, quantity conserved
per order (total = cum + leaves + cancelled/expired), rejected commands change nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from shard.engine.types import (
    ORDER_ID_SHIFT,
    AmendOrder,
    CancelOrder,
    Command,
    Level,
    MassCancel,
    OpenOrder,
    OrderStatus,
    OrderType,
    PlaceOrder,
    RejectCode,
    Report,
    Side,
    SymbolSpec,
)

DEPTH_ALL = 1_000_000


class BookView(Protocol):
    @property
    def last_seq(self) -> int: ...
    @property
    def spec(self) -> SymbolSpec: ...
    def best_bid(self) -> int | None: ...
    def best_ask(self) -> int | None: ...
    def quantity_at(self, side: Side, price: int) -> int: ...
    def depth(self, side: Side, n: int) -> list[Level]: ...
    def open_orders(self) -> list[OpenOrder]: ...


class EngineLike(Protocol):
    def add_symbol(
        self, spec: SymbolSpec, last_seq: int = 0, open_orders: Iterable[OpenOrder] = ()
    ) -> object: ...
    def execute(self, cmd: Command) -> Report: ...
    def execute_batch(self, cmds: Iterable[Command]) -> list[Report]: ...
    def book(self, symbol: str) -> Any: ...


EngineFactory = Callable[[], EngineLike]


def book_state(book: BookView) -> tuple[object, ...]:
    """Everything observable about a book except last_seq."""
    return (
        book.spec,
        book.best_bid(),
        book.best_ask(),
        book.open_orders(),
        book.depth(Side.BUY, DEPTH_ALL),
        book.depth(Side.SELL, DEPTH_ALL),
    )


def check_book(book: BookView) -> None:
    bid, ask = book.best_bid(), book.best_ask()
    assert bid is None or ask is None or bid < ask, f"crossed book: bid {bid} >= ask {ask}"
    orders = book.open_orders()
    bids = [o for o in orders if o.side == Side.BUY]
    asks = [o for o in orders if o.side == Side.SELL]
    assert orders == bids + asks, "open_orders: bids must come before asks"
    for side, side_orders, best in ((Side.BUY, bids, bid), (Side.SELL, asks, ask)):
        _check_side(book, side, side_orders, best)
    keys = [(o.account, o.client_order_id) for o in orders if o.client_order_id]
    assert len(keys) == len(set(keys)), "two open orders share (account, client_order_id)"
    assert len({o.order_id for o in orders}) == len(orders), "duplicate open order id"
    for o in orders:
        _check_open_order(book, o)


def _check_side(book: BookView, side: Side, orders: list[OpenOrder], best: int | None) -> None:
    sign = -1 if side == Side.BUY else 1
    keys = [(sign * o.price, o.priority) for o in orders]
    assert keys == sorted(keys), f"{side.name}: not best-first / FIFO"
    assert len(set(keys)) == len(keys), f"{side.name}: equal priorities inside a level"
    expected: list[Level] = []
    for o in orders:
        if expected and expected[-1].price == o.price:
            last = expected[-1]
            expected[-1] = Level(o.price, last.quantity + o.leaves_qty, last.order_count + 1)
        else:
            expected.append(Level(o.price, o.leaves_qty, 1))
    depth = book.depth(side, DEPTH_ALL)
    assert depth == expected, f"{side.name} depth {depth} != open orders {expected}"
    assert all(lv.quantity > 0 and lv.order_count > 0 for lv in depth), "empty level"
    assert best == (depth[0].price if depth else None), f"{side.name} best != depth[0]"
    for lv in depth:
        assert book.quantity_at(side, lv.price) == lv.quantity
    if depth:
        assert book.depth(side, 1) == depth[:1]


def _check_open_order(book: BookView, o: OpenOrder) -> None:
    spec = book.spec
    assert o.leaves_qty > 0, f"open order {o.order_id} with no leaves"
    assert o.quantity == o.cum_qty + o.leaves_qty, f"{o.order_id}: quantity != cum + leaves"
    assert o.cum_qty >= 0
    assert o.price > 0 and o.price % spec.tick_size == 0
    assert o.order_id >> ORDER_ID_SHIFT == spec.symbol_id
    assert 0 < o.priority <= book.last_seq
    assert (o.order_id & ((1 << ORDER_ID_SHIFT) - 1)) <= o.priority


@dataclass
class _Tracked:
    account: str
    side: Side
    price: int
    total: int
    cum: int = 0
    priority: int = 0
    open: bool = True
    removed: int = 0  # quantity cancelled or expired

    @property
    def leaves(self) -> int:
        return self.total - self.cum if self.open else 0


class Ledger:
    """Follows one engine's reports; ``step`` executes a command and checks everything."""

    def __init__(self, engine: EngineLike, specs: Iterable[SymbolSpec]) -> None:
        self.engine = engine
        self.specs = {s.symbol: s for s in specs}
        self.orders: dict[int, _Tracked] = {}
        self.last_seq: dict[str, int] = {}
        self.open_ids: set[int] = set()
        for symbol in self.specs:
            book = engine.book(symbol)
            self.last_seq[symbol] = book.last_seq
            for o in book.open_orders():
                self.orders[o.order_id] = _Tracked(
                    o.account, o.side, o.price, o.quantity, o.cum_qty, o.priority
                )
                self.open_ids.add(o.order_id)

    def step(self, cmd: Command) -> Report:
        known = cmd.symbol in self.specs
        before = book_state(self.engine.book(cmd.symbol)) if known else None
        report = self.engine.execute(cmd)
        if not known:
            assert report.seq == 0 and report.reject_code == RejectCode.UNKNOWN_SYMBOL
            assert report.status == OrderStatus.REJECTED
            return report
        book = self.engine.book(cmd.symbol)
        self.last_seq[cmd.symbol] += 1
        assert report.seq == self.last_seq[cmd.symbol] == book.last_seq, "seq gap"
        if report.status == OrderStatus.REJECTED:
            assert report.fills == () and report.expired == ()
            assert book_state(book) == before, f"rejected {cmd} changed the book"
        else:
            self._apply(cmd, report)
            touched = {f.maker_order_id for f in report.fills} | {*report.expired}
            for oid in touched | {report.order_id} - {0}:
                if self.orders[oid].open:
                    self.open_ids.add(oid)
                else:
                    self.open_ids.discard(oid)
        check_book(book)
        self._check_against_book(cmd.symbol, book)
        return report

    def _apply(self, cmd: Command, report: Report) -> None:
        for fill in report.fills:
            maker = self.orders[fill.maker_order_id]
            assert maker.open and maker.account == fill.maker_account
            assert fill.price == maker.price and fill.taker_order_id == report.order_id
            assert 0 < fill.quantity <= maker.leaves
            maker.cum += fill.quantity
            assert fill.maker_leaves == maker.leaves
            maker.open = maker.leaves > 0
        for oid in report.expired:
            gone = self.orders[oid]
            assert gone.open and gone.account == report.account
            gone.removed += gone.leaves
            gone.open = False
        if isinstance(cmd, PlaceOrder):
            self._apply_place(cmd, report)
        elif isinstance(cmd, AmendOrder):
            self._apply_amend(cmd, report)
        elif isinstance(cmd, CancelOrder):
            assert report.status == OrderStatus.CANCELED and not report.fills
            order = self.orders[report.order_id]
            assert order.open and order.account == cmd.account
            assert (report.cum_qty, report.price) == (order.cum, order.price)
            order.removed += order.leaves
            order.open = False
        elif isinstance(cmd, MassCancel):
            symbol_id = self.specs[cmd.symbol].symbol_id
            assert not [
                oid
                for oid in self.open_ids - set(report.expired)
                if oid >> ORDER_ID_SHIFT == symbol_id
                and self.orders[oid].account == cmd.account
                and cmd.side in (None, self.orders[oid].side)
            ], "mass cancel missed"
            assert list(report.expired) == sorted(report.expired)

    def _apply_place(self, cmd: PlaceOrder, report: Report) -> None:
        assert report.order_id == self.specs[cmd.symbol].symbol_id << ORDER_ID_SHIFT | report.seq
        assert report.order_id not in self.orders
        for fill in report.fills:
            if cmd.order_type == OrderType.LIMIT:
                assert fill.price <= cmd.price if cmd.side == Side.BUY else fill.price >= cmd.price
        order = _Tracked(cmd.account, cmd.side, cmd.price, cmd.quantity)
        self.orders[report.order_id] = order
        self._settle(order, report, sum(f.quantity for f in report.fills), report.seq)

    def _apply_amend(self, cmd: AmendOrder, report: Report) -> None:
        order = self.orders[report.order_id]
        assert order.open and order.account == cmd.account
        price, total = cmd.new_price or order.price, cmd.new_quantity or order.total
        keeps_priority = price == order.price and total <= order.total
        if keeps_priority:
            assert report.fills == () and report.expired == (), "reduce in place matched"
        order.price, order.total = price, total
        assert report.price == order.price
        priority = order.priority if keeps_priority else report.seq
        self._settle(order, report, order.cum + sum(f.quantity for f in report.fills), priority)

    def _settle(self, order: _Tracked, report: Report, cum: int, priority: int) -> None:
        """The taker's outcome: resting (at ``priority``), filled or expired."""
        order.cum = cum
        order.open = False
        order.priority = 0
        assert report.cum_qty == cum, f"cum {report.cum_qty} != sum of fills {cum}"
        if report.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED):
            order.open, order.priority = True, priority
            assert report.leaves_qty == order.leaves > 0 and report.priority == priority
            assert (report.status == OrderStatus.NEW) == (cum == 0)
        elif report.status == OrderStatus.FILLED:
            assert cum == order.total and report.leaves_qty == 0
        else:
            assert report.status == OrderStatus.EXPIRED and report.leaves_qty == 0
            assert report.priority == 0 and cum < order.total
            order.removed += order.total - cum
        assert order.total == order.cum + order.leaves + order.removed, "quantity not conserved"

    def _check_against_book(self, symbol: str, book: BookView) -> None:
        symbol_id = self.specs[symbol].symbol_id
        mine = {
            oid: self.orders[oid] for oid in self.open_ids if oid >> ORDER_ID_SHIFT == symbol_id
        }
        seen = {o.order_id: o for o in book.open_orders()}
        assert set(seen) == set(mine), f"open orders {set(seen) ^ set(mine)} differ"
        for oid, o in seen.items():
            t = mine[oid]
            mine_now = (t.account, t.side, t.price, t.total, t.cum, t.leaves, t.priority)
            assert (
                o.account,
                o.side,
                o.price,
                o.quantity,
                o.cum_qty,
                o.leaves_qty,
                o.priority,
            ) == mine_now, f"order {oid} differs from what its reports said"

    def check_conservation(self) -> None:
        """Every order ever placed: total = cum + leaves + cancelled/expired."""
        for oid, t in self.orders.items():
            assert t.total == t.cum + t.leaves + t.removed, f"{oid}: quantity not conserved"
            assert t.open == (oid in self.open_ids)
