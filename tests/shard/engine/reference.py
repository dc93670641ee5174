"""Reference matcher: a small, obviously-correct implementation of docs/matching-semantics.md.

Slow on purpose: each symbol keeps its open orders as plain immutable ``OpenOrder`` records
in a dict by id; every query or match sorts the candidates by (price best-first, priority).
No heaps, no level indexes. Differential tests compare its reports with the engine's.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from shard.engine.types import (
    INT64_MAX,
    ORDER_ID_SHIFT,
    AmendOrder,
    CancelOrder,
    Command,
    Fill,
    Level,
    MassCancel,
    OpenOrder,
    OrderStatus,
    OrderType,
    PlaceOrder,
    RejectCode,
    Report,
    SetSymbolStatus,
    Side,
    StpMode,
    SymbolSpec,
    SymbolStatus,
    TimeInForce,
)

MAX_CLIENT_ORDER_ID_LEN = 64
RESTING = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)


def _valid(enum_cls: type[IntEnum], value: object) -> bool:
    """Membership by value: an int equal to a member's value counts as that member."""
    return isinstance(value, int) and value in {member.value for member in enum_cls}


def _opposite(side: Side) -> Side:
    return Side.SELL if side == Side.BUY else Side.BUY


def _acceptable(maker_price: int, taker_side: Side, limit: int | None) -> bool:
    if limit is None:  # MARKET takes any price
        return True
    return maker_price <= limit if taker_side == Side.BUY else maker_price >= limit


def _resting_status(order: OpenOrder) -> OrderStatus:
    return OrderStatus.NEW if order.cum_qty == 0 else OrderStatus.PARTIALLY_FILLED


def _traded(order: OpenOrder, qty: int) -> OpenOrder:
    return order._replace(cum_qty=order.cum_qty + qty, leaves_qty=order.leaves_qty - qty)


def _fill(m: OpenOrder, t: OpenOrder, qty: int) -> Fill:
    """Maker ``m`` (after the trade) and taker ``t`` traded ``qty`` at the maker's price."""
    return Fill(
        m.order_id, m.account, m.client_order_id, t.order_id, m.price, qty, m.leaves_qty, m.cum_qty
    )


class ReferenceBook:
    """One symbol: its spec, its last seq and its open orders."""

    def __init__(self, spec: SymbolSpec, last_seq: int, orders: Iterable[OpenOrder]) -> None:
        self.spec = spec
        self.last_seq = last_seq
        self.orders: dict[int, OpenOrder] = {o.order_id: o for o in orders}

    def side_orders(self, side: Side) -> list[OpenOrder]:
        """One side, best price first, FIFO (priority) inside a level."""
        sign = -1 if side == Side.BUY else 1
        mine = [o for o in self.orders.values() if o.side == side]
        return sorted(mine, key=lambda o: (sign * o.price, o.priority))

    def best_bid(self) -> int | None:
        return next((o.price for o in self.side_orders(Side.BUY)), None)

    def best_ask(self) -> int | None:
        return next((o.price for o in self.side_orders(Side.SELL)), None)

    def quantity_at(self, side: Side, price: int) -> int:
        return sum(o.leaves_qty for o in self.orders.values() if (o.side, o.price) == (side, price))

    def depth(self, side: Side, n: int) -> list[Level]:
        levels: list[Level] = []
        for o in self.side_orders(side):
            if levels and levels[-1].price == o.price:
                last = levels[-1]
                levels[-1] = Level(o.price, last.quantity + o.leaves_qty, last.order_count + 1)
            else:
                levels.append(Level(o.price, o.leaves_qty, 1))
        return levels[: max(n, 0)]

    def open_orders(self) -> list[OpenOrder]:
        return self.side_orders(Side.BUY) + self.side_orders(Side.SELL)

    def find(self, account: str, order_id: int, client_order_id: str) -> OpenOrder | None:
        """By order_id if non-zero (it must be the account's), else by client order id."""
        for o in self.orders.values():
            if o.account != account:
                continue
            if (o.order_id == order_id) if order_id else (o.client_order_id == client_order_id):
                return o
        return None

    def crosses(self, side: Side, price: int) -> bool:
        """Would an order of ``side`` at ``price`` take liquidity?"""
        if side == Side.BUY:
            ask = self.best_ask()
            return ask is not None and ask <= price
        bid = self.best_bid()
        return bid is not None and bid >= price


class ReferenceEngine:
    """Same API and reports as ``shard.engine.MatchingEngine``."""

    def __init__(self) -> None:
        self._books: dict[str, ReferenceBook] = {}

    def add_symbol(
        self, spec: SymbolSpec, last_seq: int = 0, open_orders: Iterable[OpenOrder] = ()
    ) -> None:
        self._books[spec.symbol] = ReferenceBook(spec, last_seq, open_orders)

    def book(self, symbol: str) -> ReferenceBook:
        return self._books[symbol]

    def execute_batch(self, cmds: Iterable[Command]) -> list[Report]:
        return [self.execute(cmd) for cmd in cmds]

    def execute(self, cmd: Command) -> Report:
        book = self._books.get(cmd.symbol)
        if book is None:
            return _reject(cmd, 0, RejectCode.UNKNOWN_SYMBOL)
        book.last_seq += 1
        seq = book.last_seq
        if isinstance(cmd, PlaceOrder):
            return _place(book, cmd, seq)
        if isinstance(cmd, CancelOrder):
            return _cancel(book, cmd, seq)
        if isinstance(cmd, AmendOrder):
            return _amend(book, cmd, seq)
        if isinstance(cmd, MassCancel):
            return _mass_cancel(book, cmd, seq)
        book.spec = book.spec._replace(status=cmd.status)
        return Report(
            cmd.symbol, seq, 0, "", "", OrderStatus.NEW, RejectCode.NONE, 0, 0, 0, 0, (), (), 0
        )


def _reject(cmd: Command, seq: int, code: RejectCode, found: OpenOrder | None = None) -> Report:
    """Ids, account and (PlaceOrder) price echoed; cum, leaves, priority 0; no fills. Side:
    the PlaceOrder's, else the side of the order the command ``found``, else 0."""
    if isinstance(cmd, PlaceOrder):
        side = int(cmd.side)
    elif found is not None:
        side = int(found.side)
    else:
        side = 0
    order_id = cmd.order_id if isinstance(cmd, CancelOrder | AmendOrder) else 0
    client_order_id = "" if isinstance(cmd, MassCancel | SetSymbolStatus) else cmd.client_order_id
    account = "" if isinstance(cmd, SetSymbolStatus) else cmd.account
    price = cmd.price if isinstance(cmd, PlaceOrder) else 0
    status = OrderStatus.REJECTED
    return Report(
        cmd.symbol, seq, order_id, client_order_id, account, status, code, price, 0, 0, 0, (), (),
        side,
    )  # fmt: skip


# fmt: off
def _report(book: ReferenceBook, seq: int, order: OpenOrder, status: OrderStatus,
            code: RejectCode = RejectCode.NONE, fills: tuple[Fill, ...] = (),
            expired: tuple[int, ...] = ()) -> Report:
    """Report on ``order``; leaves and priority only if it rests after the command."""
    rests = status in RESTING
    leaves, priority = (order.leaves_qty, order.priority) if rests else (0, 0)
    return Report(book.spec.symbol, seq, order.order_id, order.client_order_id, order.account,
                  status, code, order.price, order.cum_qty, leaves, priority, fills, expired,
                  int(order.side))
# fmt: on


def _price_code(spec: SymbolSpec, price: int) -> RejectCode:
    if price <= 0 or price > INT64_MAX:
        return RejectCode.INVALID_PRICE
    return RejectCode.PRICE_NOT_TICK_MULTIPLE if price % spec.tick_size else RejectCode.NONE


def _quantity_code(spec: SymbolSpec, quantity: int) -> RejectCode:
    if quantity <= 0 or quantity > INT64_MAX:
        return RejectCode.INVALID_QUANTITY
    if quantity % spec.lot_size:
        return RejectCode.QUANTITY_NOT_LOT_MULTIPLE
    if quantity < spec.min_quantity:
        return RejectCode.QUANTITY_BELOW_MIN
    return RejectCode.QUANTITY_ABOVE_MAX if quantity > spec.max_quantity else RejectCode.NONE


def _place_fields_code(spec: SymbolSpec, cmd: PlaceOrder) -> RejectCode:
    """Checks 1-8 of PlaceOrder: the command against the symbol's reference data."""
    if not cmd.account:
        return RejectCode.INVALID_ACCOUNT
    for enum_cls, value, code in (
        (Side, cmd.side, RejectCode.INVALID_SIDE),
        (OrderType, cmd.order_type, RejectCode.INVALID_ORDER_TYPE),
        (TimeInForce, cmd.time_in_force, RejectCode.INVALID_TIME_IN_FORCE),
        (StpMode, cmd.stp, RejectCode.INVALID_STP_MODE),
    ):
        if not _valid(enum_cls, value):
            return code
    if len(cmd.client_order_id) > MAX_CLIENT_ORDER_ID_LEN:
        return RejectCode.CLIENT_ORDER_ID_TOO_LONG
    if spec.status == SymbolStatus.HALTED:
        return RejectCode.SYMBOL_HALTED
    is_limit = cmd.order_type == OrderType.LIMIT
    if cmd.post_only and (not is_limit or cmd.time_in_force != TimeInForce.GTC):
        return RejectCode.POST_ONLY_NOT_ALLOWED
    if is_limit and (code := _price_code(spec, cmd.price)):
        return code
    if not is_limit and cmd.price != 0:
        return RejectCode.INVALID_PRICE
    if code := _quantity_code(spec, cmd.quantity):
        return code
    if is_limit and cmd.price * cmd.quantity > INT64_MAX:
        return RejectCode.NOTIONAL_OVERFLOW
    return RejectCode.NONE


def _fillable(book: ReferenceBook, cmd: PlaceOrder, limit: int | None) -> int:
    total = 0
    for maker in book.side_orders(_opposite(cmd.side)):
        if not _acceptable(maker.price, cmd.side, limit):
            break
        if cmd.stp != StpMode.NONE and maker.account == cmd.account:
            if cmd.stp == StpMode.EXPIRE_MAKER:
                continue  # skipped, not counted
            break
        total += maker.leaves_qty
    return total


def _place_book_code(book: ReferenceBook, cmd: PlaceOrder, limit: int | None) -> RejectCode:
    """Checks 9-12 of PlaceOrder: the command against the current book."""
    if cmd.client_order_id and book.find(cmd.account, 0, cmd.client_order_id):
        return RejectCode.DUPLICATE_CLIENT_ORDER_ID
    rests = cmd.order_type == OrderType.LIMIT and cmd.time_in_force == TimeInForce.GTC
    if rests and book.quantity_at(cmd.side, cmd.price) + cmd.quantity > INT64_MAX:
        return RejectCode.LEVEL_QUANTITY_OVERFLOW
    if cmd.post_only and book.crosses(cmd.side, cmd.price):
        return RejectCode.POST_ONLY_WOULD_TAKE
    if cmd.time_in_force == TimeInForce.FOK and _fillable(book, cmd, limit) < cmd.quantity:
        return RejectCode.FOK_NOT_FILLABLE
    return RejectCode.NONE


def _place(book: ReferenceBook, cmd: PlaceOrder, seq: int) -> Report:
    code = _place_fields_code(book.spec, cmd)
    limit = cmd.price if cmd.order_type == OrderType.LIMIT else None
    if code or (code := _place_book_code(book, cmd, limit)):
        return _reject(cmd, seq, code)
    order_id = book.spec.symbol_id << ORDER_ID_SHIFT | seq
    side, stp, qty = Side(cmd.side), StpMode(cmd.stp), cmd.quantity  # members, not plain ints
    taker = OpenOrder(order_id, cmd.account, cmd.client_order_id, side, cmd.price, qty, 0, qty,
                      0, stp, cmd.post_only)  # fmt: skip
    can_rest = limit is not None and cmd.time_in_force == TimeInForce.GTC
    return _take(book, taker, seq, limit, can_rest)


def _match(
    book: ReferenceBook, taker: OpenOrder, limit: int | None
) -> tuple[OpenOrder, list[Fill], list[int], bool]:
    """Take makers best-first. Returns the taker after matching, fills, the ids of makers
    expired by STP, and whether STP expired the taker."""
    fills: list[Fill] = []
    expired: list[int] = []
    for maker in book.side_orders(_opposite(taker.side)):
        if taker.leaves_qty == 0 or not _acceptable(maker.price, taker.side, limit):
            break
        if taker.stp != StpMode.NONE and maker.account == taker.account:
            if taker.stp != StpMode.EXPIRE_TAKER:  # EXPIRE_MAKER, EXPIRE_BOTH
                expired.append(maker.order_id)
                del book.orders[maker.order_id]
            if taker.stp != StpMode.EXPIRE_MAKER:  # EXPIRE_TAKER, EXPIRE_BOTH
                return taker, fills, expired, True
            continue
        qty = min(taker.leaves_qty, maker.leaves_qty)
        filled_maker, taker = _traded(maker, qty), _traded(taker, qty)
        fills.append(_fill(filled_maker, taker, qty))
        book.orders[maker.order_id] = filled_maker
        if filled_maker.leaves_qty == 0:
            del book.orders[maker.order_id]
    return taker, fills, expired, False


def _take(
    book: ReferenceBook, taker: OpenOrder, seq: int, limit: int | None, can_rest: bool
) -> Report:
    """Match ``taker`` (not in the book), then rest, fill or expire it."""
    taker, fills, expired, stp_expired = _match(book, taker, limit)
    code = RejectCode.NONE
    if stp_expired:
        status, code = OrderStatus.EXPIRED, RejectCode.SELF_TRADE_PREVENTED
    elif taker.leaves_qty == 0:
        status = OrderStatus.FILLED
    elif can_rest:
        taker = taker._replace(priority=seq)  # the back of its level
        book.orders[taker.order_id] = taker
        status = _resting_status(taker)
    else:
        status = OrderStatus.EXPIRED
    return _report(book, seq, taker, status, code, tuple(fills), tuple(expired))


def _reference_code(cmd: CancelOrder | AmendOrder) -> RejectCode:
    if not cmd.account:
        return RejectCode.INVALID_ACCOUNT
    if cmd.order_id == 0 and not cmd.client_order_id:
        return RejectCode.MISSING_ORDER_REFERENCE
    return RejectCode.NONE


def _cancel(book: ReferenceBook, cmd: CancelOrder, seq: int) -> Report:
    if code := _reference_code(cmd):
        return _reject(cmd, seq, code)
    order = book.find(cmd.account, cmd.order_id, cmd.client_order_id)
    if order is None:
        return _reject(cmd, seq, RejectCode.UNKNOWN_ORDER)
    del book.orders[order.order_id]
    return _report(book, seq, order, OrderStatus.CANCELED)


def _amend_code(book: ReferenceBook, cmd: AmendOrder, order: OpenOrder) -> RejectCode:
    """Checks 5-10 of AmendOrder."""
    if cmd.new_price != 0 and (code := _price_code(book.spec, cmd.new_price)):
        return code
    if cmd.new_quantity != 0 and (code := _quantity_code(book.spec, cmd.new_quantity)):
        return code
    price, total = cmd.new_price or order.price, cmd.new_quantity or order.quantity
    if total <= order.cum_qty:
        return RejectCode.AMEND_QUANTITY_NOT_ABOVE_FILLED
    if price * total > INT64_MAX:
        return RejectCode.NOTIONAL_OVERFLOW
    if not (price == order.price and total <= order.quantity):  # priority is lost
        level = book.quantity_at(order.side, price)
        if price == order.price:
            level -= order.leaves_qty  # the level the order leaves does not count
        if level + total - order.cum_qty > INT64_MAX:
            return RejectCode.LEVEL_QUANTITY_OVERFLOW
    if order.post_only and book.crosses(order.side, price):
        return RejectCode.POST_ONLY_WOULD_TAKE
    return RejectCode.NONE


def _amend(book: ReferenceBook, cmd: AmendOrder, seq: int) -> Report:
    code = _reference_code(cmd)
    if not code and book.spec.status == SymbolStatus.HALTED:
        code = RejectCode.SYMBOL_HALTED
    if code:
        return _reject(cmd, seq, code)
    order = book.find(cmd.account, cmd.order_id, cmd.client_order_id)
    if order is None:
        return _reject(cmd, seq, RejectCode.UNKNOWN_ORDER)
    if code := _amend_code(book, cmd, order):
        return _reject(cmd, seq, code, found=order)
    price, total = cmd.new_price or order.price, cmd.new_quantity or order.quantity
    changed = order._replace(price=price, quantity=total, leaves_qty=total - order.cum_qty)
    if price == order.price and total <= order.quantity:  # reduce in place, priority kept
        book.orders[order.order_id] = changed
        return _report(book, seq, changed, _resting_status(changed))
    del book.orders[order.order_id]
    return _take(book, changed, seq, price, can_rest=True)


def _mass_cancel(book: ReferenceBook, cmd: MassCancel, seq: int) -> Report:
    if not cmd.account:
        return _reject(cmd, seq, RejectCode.INVALID_ACCOUNT)
    if cmd.side is not None and not _valid(Side, cmd.side):
        return _reject(cmd, seq, RejectCode.INVALID_SIDE)
    gone = sorted(
        o.order_id
        for o in book.orders.values()
        if o.account == cmd.account and cmd.side in (None, o.side)
    )
    for order_id in gone:
        del book.orders[order_id]
    return Report(
        cmd.symbol,
        seq,
        0,
        "",
        cmd.account,
        OrderStatus.CANCELED,
        RejectCode.NONE,
        0,
        0,
        0,
        0,
        (),
        tuple(gone),
        0,  # no single order is concerned
    )
