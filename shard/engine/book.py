"""One symbol's order book: applies commands, matches, and reports what happened.

The hot paths (place, cancel, the matching loop) bind attributes to locals and avoid
per-order allocations beyond the resting order and the report; see docs/benchmarks.md.
"""

from __future__ import annotations

from collections.abc import Iterable

from .levels import BookSide, PriceLevel, RestingOrder
from .matching import TakeResult, take
from .types import (
    INT64_MAX,
    ORDER_ID_SHIFT,
    AmendOrder,
    CancelOrder,
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
from .validation import MAX_CLIENT_ORDER_ID, check_amend_fields, check_place, valid_side

_new = tuple.__new__  # builds a Report without NamedTuple's Python-level __new__
_SIDES = frozenset(Side)
_TYPES = frozenset(OrderType)
_TIFS = frozenset(TimeInForce)
_STPS = frozenset(StpMode)
_NO_LIMIT = -(1 << 64)  # a key below every real key: MARKET orders take any price
_NEW = OrderStatus.NEW
_PARTIAL = OrderStatus.PARTIALLY_FILLED
_FILLED = OrderStatus.FILLED
_EXPIRED = OrderStatus.EXPIRED
_REJECTED = OrderStatus.REJECTED
_CANCELED = OrderStatus.CANCELED
_OK = RejectCode.NONE
_STP = RejectCode.SELF_TRADE_PREVENTED
_GTC = TimeInForce.GTC
_LIMIT = OrderType.LIMIT
_BUY = Side.BUY
_STP_NONE = StpMode.NONE


class OrderBook:
    """Book, indexes and sequence of one symbol. Not thread-safe; one owner applies commands."""

    def __init__(self, spec: SymbolSpec, last_seq: int = 0) -> None:
        self.spec = spec
        self.symbol = spec.symbol
        self.last_seq = last_seq
        self._id_base = spec.symbol_id << ORDER_ID_SHIFT
        self._cache_spec()
        self.bids = BookSide(Side.BUY)
        self.asks = BookSide(Side.SELL)
        self._orders: dict[int, RestingOrder] = {}
        self._by_cloid: dict[tuple[str, str], RestingOrder] = {}
        self._by_account: dict[str, dict[int, RestingOrder]] = {}

    def clear(self) -> None:
        """Drop every order (the book is going away: reloaded, moved, fenced out)."""
        self.bids.clear()
        self.asks.clear()
        self._orders.clear()
        self._by_cloid.clear()
        self._by_account.clear()

    def _cache_spec(self) -> None:
        spec = self.spec
        self._tick, self._lot = spec.tick_size, spec.lot_size
        self._min_qty, self._max_qty = max(1, spec.min_quantity), min(INT64_MAX, spec.max_quantity)
        self._trading = spec.status == SymbolStatus.TRADING

    # --- queries ----------------------------------------------------------------------

    def best_bid(self) -> int | None:
        return self.bids.best_price()

    def best_ask(self) -> int | None:
        return self.asks.best_price()

    def quantity_at(self, side: Side, price: int) -> int:
        level = self._side(side).level_at(price)
        return level.total if level else 0

    def depth(self, side: Side, n: int) -> list[Level]:
        return self._side(side).depth(n)

    def open_orders(self) -> list[OpenOrder]:
        ordered = self.bids.orders_best_first() + self.asks.orders_best_first()
        return [order.snapshot() for order in ordered]

    def restore(self, open_orders: Iterable[OpenOrder]) -> None:
        """Rebuild resting orders (recovery); priority order decides FIFO inside levels."""
        for o in sorted(open_orders, key=lambda o: o.priority):
            order = RestingOrder(
                o.order_id, o.account, o.client_order_id, o.side, o.price,
                o.cum_qty, o.leaves_qty, o.priority, o.stp, o.post_only,
            )  # fmt: skip
            self._side(order.side).enqueue(order)
            self._remember(order)

    # --- commands ---------------------------------------------------------------------

    def place(self, cmd: PlaceOrder) -> Report:
        """Validate, match and rest a new order. The hottest function of the engine: the
        common path is inlined (see docs/decisions/0003-engine-hot-path.md)."""
        seq = self.last_seq = self.last_seq + 1
        _, account, side, qty, price, order_type, tif, post_only, stp, cloid = cmd
        is_buy = side == 1
        is_limit = order_type == 1
        # One combined test, true exactly when check_place passes; the ordered check (which
        # names the first failure) runs only for bad commands.
        if not (
            self._min_qty <= qty <= self._max_qty and not qty % self._lot
            and ((price > 0 and not price % self._tick and price * qty <= INT64_MAX)
                 if is_limit else price == 0)
            and account
            and side in _SIDES and order_type in _TYPES and tif in _TIFS and stp in _STPS
            and len(cloid) <= MAX_CLIENT_ORDER_ID
            and self._trading
            and (not post_only or (is_limit and tif == 1))
        ):  # fmt: skip
            code = check_place(self.spec, cmd)
            if code:
                return self._reject_place(cmd, seq, code)
        own = self.bids if is_buy else self.asks
        own_key = price if is_buy else -price
        level = own.levels.get(own_key) if is_limit else None
        if cloid or post_only or tif != 1 or (level is not None and level.total + qty > INT64_MAX):
            code = self._check_place_against_book(cmd, level, is_buy, is_limit)
            if code:
                return self._reject_place(cmd, seq, code)
        order_id = self._id_base | seq
        min_key = -own_key if is_limit else _NO_LIMIT
        opposite_keys = (self.asks if is_buy else self.bids).keys
        if opposite_keys and opposite_keys[-1] >= min_key:
            taken = self._take(order_id, account, stp, is_buy, min_key, qty)
            remaining = taken.remaining
            fills, expired = tuple(taken.fills), tuple(taken.expired)
            if taken.stopped:
                cum = qty - remaining
                return _new(Report, (self.symbol, seq, order_id, cloid, account, _EXPIRED,
                                     _STP, price, cum, 0, 0, fills, expired, side))  # fmt: skip
        else:
            remaining, fills, expired = qty, (), ()
        cum = qty - remaining
        if not remaining:
            status, priority = _FILLED, 0
        elif is_limit and tif == 1:
            order = RestingOrder(order_id, account, cloid, side, price, cum, remaining, seq, stp,
                                 post_only)  # fmt: skip
            if level is None:
                own.enqueue(order)
            else:  # inlined PriceLevel append: the common case of a resting order
                level.queue.append(order)
                level.total += remaining
                level.count += 1
                order.level = level
            self._orders[order_id] = order
            mine = self._by_account.get(account)
            if mine is None or cloid:
                self._remember(order)
            else:
                mine[order_id] = order
            status, priority = (_PARTIAL if cum else _NEW), seq
        else:
            status, priority, remaining = _EXPIRED, 0, 0
        return _new(Report, (self.symbol, seq, order_id, cloid, account, status, _OK, price,
                             cum, remaining, priority, fills, expired, side))  # fmt: skip

    def _reject_place(self, cmd: PlaceOrder, seq: int, code: RejectCode) -> Report:
        return _new(Report, (self.symbol, seq, 0, cmd.client_order_id, cmd.account, _REJECTED,
                             code, cmd.price, 0, 0, 0, (), (), cmd.side))  # fmt: skip

    def cancel(self, cmd: CancelOrder) -> Report:
        seq = self.last_seq = self.last_seq + 1
        _, account, order_id, cloid = cmd
        order = self._orders.get(order_id) if order_id else None
        if order is None or order.account != account or not account:
            found = self._find(account, order_id, cloid)
            if not isinstance(found, RestingOrder):
                return self._reject(seq, account, order_id, cloid, found, 0)
            order = found
        (self.bids if order.side == 1 else self.asks).withdraw(order)
        self._forget(order)
        return _new(Report, (self.symbol, seq, order.order_id, order.client_order_id, account,
                             _CANCELED, _OK, order.price, order.cum, 0, 0, (), (),
                             order.side))  # fmt: skip

    def mass_cancel(self, cmd: MassCancel) -> Report:
        seq = self.last_seq = self.last_seq + 1
        code = _OK
        if not cmd.account:
            code = RejectCode.INVALID_ACCOUNT
        elif cmd.side is not None and not valid_side(cmd.side):
            code = RejectCode.INVALID_SIDE
        if code:
            return self._reject(seq, cmd.account, 0, "", code, 0)
        mine = self._by_account.get(cmd.account, {})
        victims = [o for o in mine.values() if cmd.side is None or o.side == cmd.side]
        victims.sort(key=lambda o: o.order_id)
        for order in victims:
            self._side(order.side).withdraw(order)
            self._forget(order)
        return Report(
            self.symbol, seq, 0, "", cmd.account, OrderStatus.CANCELED, _OK, 0, 0, 0, 0, (),
            tuple(o.order_id for o in victims), 0,
        )  # fmt: skip

    def set_status(self, cmd: SetSymbolStatus) -> Report:
        seq = self.last_seq = self.last_seq + 1
        self.spec = self.spec._replace(status=cmd.status)
        self._cache_spec()
        return Report(self.symbol, seq, 0, "", "", _NEW, _OK, 0, 0, 0, 0, (), (), 0)

    def amend(self, cmd: AmendOrder) -> Report:
        seq = self.last_seq = self.last_seq + 1
        found = self._find(cmd.account, cmd.order_id, cmd.client_order_id, halted_check=True)
        if not isinstance(found, RestingOrder):
            return self._reject(seq, cmd.account, cmd.order_id, cmd.client_order_id, found, 0)
        code = check_amend_fields(self.spec, cmd) or self._check_amend_against_book(found, cmd)
        if code:
            return self._reject(
                seq, cmd.account, cmd.order_id, cmd.client_order_id, code, found.side
            )
        price = cmd.new_price or found.price
        total = cmd.new_quantity or found.cum + found.leaves
        if price == found.price and total <= found.cum + found.leaves:
            return self._reduce_in_place(seq, found, total)
        return self._requeue(seq, found, price, total)

    # --- amend helpers ----------------------------------------------------------------

    def _check_amend_against_book(self, order: RestingOrder, cmd: AmendOrder) -> RejectCode:
        price = cmd.new_price or order.price
        total = cmd.new_quantity or order.cum + order.leaves
        if total <= order.cum:
            return RejectCode.AMEND_QUANTITY_NOT_ABOVE_FILLED
        if price * total > INT64_MAX:
            return RejectCode.NOTIONAL_OVERFLOW
        keeps_priority = price == order.price and total <= order.cum + order.leaves
        if not keeps_priority:
            level = self._side(order.side).level_at(price)
            resting = 0 if level is None else level.total
            if level is order.level:
                resting -= order.leaves
            if resting + total - order.cum > INT64_MAX:
                return RejectCode.LEVEL_QUANTITY_OVERFLOW
        if order.post_only and self._crosses(order.side == _BUY, price):
            return RejectCode.POST_ONLY_WOULD_TAKE
        return _OK

    def _reduce_in_place(self, seq: int, order: RestingOrder, total: int) -> Report:
        leaves = total - order.cum
        level = order.level
        assert level is not None
        level.total -= order.leaves - leaves
        order.leaves = leaves
        return Report(
            self.symbol, seq, order.order_id, order.client_order_id, order.account,
            _PARTIAL if order.cum else _NEW, _OK, order.price, order.cum, leaves,
            order.priority, (), (), order.side,
        )  # fmt: skip

    def _requeue(self, seq: int, old: RestingOrder, price: int, total: int) -> Report:
        is_buy = old.side == _BUY
        self._side(old.side).withdraw(old)
        self._forget(old)
        leaves = total - old.cum
        min_key = -price if is_buy else price
        taken = self._take(old.order_id, old.account, old.stp, is_buy, min_key, leaves)
        remaining = taken.remaining
        cum = old.cum + leaves - remaining
        status, code, priority = _FILLED, _OK, 0
        if taken.stopped:
            status, code, remaining = _EXPIRED, _STP, 0
        elif remaining:
            order = RestingOrder(
                old.order_id, old.account, old.client_order_id, old.side, price, cum,
                remaining, seq, old.stp, old.post_only,
            )  # fmt: skip
            self._side(old.side).enqueue(order)
            self._remember(order)
            status, priority = (_PARTIAL if cum else _NEW), seq
        return Report(
            self.symbol, seq, old.order_id, old.client_order_id, old.account, status, code,
            price, cum, remaining, priority, tuple(taken.fills), tuple(taken.expired), old.side,
        )  # fmt: skip

    # --- book checks ------------------------------------------------------------------

    def _check_place_against_book(
        self, cmd: PlaceOrder, level: PriceLevel | None, is_buy: bool, is_limit: bool
    ) -> RejectCode:
        """Checks 9-12 of PlaceOrder; ``level`` is the order's own level, if it exists."""
        cloid = cmd.client_order_id
        if cloid and (cmd.account, cloid) in self._by_cloid:
            return RejectCode.DUPLICATE_CLIENT_ORDER_ID
        resting = 0 if level is None else level.total
        if is_limit and cmd.time_in_force == _GTC and resting + cmd.quantity > INT64_MAX:
            return RejectCode.LEVEL_QUANTITY_OVERFLOW
        if cmd.post_only and self._crosses(is_buy, cmd.price):
            return RejectCode.POST_ONLY_WOULD_TAKE
        if cmd.time_in_force == TimeInForce.FOK:
            min_key = (-cmd.price if is_buy else cmd.price) if is_limit else _NO_LIMIT
            if not self._fillable(cmd.account, cmd.stp, is_buy, min_key, cmd.quantity):
                return RejectCode.FOK_NOT_FILLABLE
        return _OK

    def _crosses(self, is_buy: bool, price: int) -> bool:
        keys = (self.asks if is_buy else self.bids).keys
        return bool(keys) and keys[-1] >= (-price if is_buy else price)

    def _fillable(self, account: str, stp: int, is_buy: bool, min_key: int, need: int) -> bool:
        """FOK pre-check: would matching fill ``need`` before STP or the limit stops it?"""
        opposite = self.asks if is_buy else self.bids
        watch_stp = stp != _STP_NONE and account in self._by_account
        total = 0
        for key in reversed(opposite.keys):
            if key < min_key:
                break
            level = opposite.levels[key]
            if not watch_stp:
                total += level.total
            else:
                for maker in level.queue:
                    if maker.leaves and maker.account == account:
                        if stp == StpMode.EXPIRE_MAKER:
                            continue
                        return total >= need
                    total += maker.leaves
                    if total >= need:
                        return True
            if total >= need:
                return True
        return total >= need

    # --- matching and indexes ---------------------------------------------------------

    def _take(
        self, taker_id: int, account: str, stp: int, is_buy: bool, min_key: int, qty: int
    ) -> TakeResult:
        opposite = self.asks if is_buy else self.bids
        watch_stp = stp != _STP_NONE and account in self._by_account
        return take(opposite, TakeResult(qty), taker_id, account, stp if watch_stp else None,
                    min_key, self._forget)  # fmt: skip

    def _side(self, side: int) -> BookSide:
        return self.bids if side == _BUY else self.asks

    def _find(
        self, account: str, order_id: int, cloid: str, halted_check: bool = False
    ) -> RestingOrder | RejectCode:
        if not account:
            return RejectCode.INVALID_ACCOUNT
        if not order_id and not cloid:
            return RejectCode.MISSING_ORDER_REFERENCE
        if halted_check and self.spec.status != SymbolStatus.TRADING:
            return RejectCode.SYMBOL_HALTED
        if order_id:
            order = self._orders.get(order_id)
            if order is not None and order.account == account:
                return order
            return RejectCode.UNKNOWN_ORDER
        return self._by_cloid.get((account, cloid)) or RejectCode.UNKNOWN_ORDER

    def _reject(
        self, seq: int, account: str, order_id: int, cloid: str, code: RejectCode, side: int
    ) -> Report:
        """A rejected cancel, amend or mass cancel; ``side`` is the order's if it was found."""
        return _new(Report, (self.symbol, seq, order_id, cloid, account, _REJECTED, code,
                             0, 0, 0, 0, (), (), side))  # fmt: skip

    def _remember(self, order: RestingOrder) -> None:
        self._orders[order.order_id] = order
        if order.client_order_id:
            self._by_cloid[order.account, order.client_order_id] = order
        mine = self._by_account.get(order.account)
        if mine is None:
            mine = self._by_account[order.account] = {}
        mine[order.order_id] = order

    def _forget(self, order: RestingOrder) -> None:
        del self._orders[order.order_id]
        if order.client_order_id:
            del self._by_cloid[order.account, order.client_order_id]
        mine = self._by_account[order.account]
        del mine[order.order_id]
        if not mine:
            del self._by_account[order.account]
