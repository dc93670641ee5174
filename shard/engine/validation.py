"""Stateless checks of a command against the symbol's reference data.

Each function returns the first failing RejectCode (NONE when the command passes), in
the order fixed by docs/matching-semantics.md. Checks that need the book live in book.py.
"""

from __future__ import annotations

from .types import (
    INT64_MAX,
    AmendOrder,
    OrderType,
    PlaceOrder,
    RejectCode,
    Side,
    StpMode,
    SymbolSpec,
    SymbolStatus,
    TimeInForce,
)

MAX_CLIENT_ORDER_ID = 64

_SIDES = frozenset(Side)
_TYPES = frozenset(OrderType)
_TIFS = frozenset(TimeInForce)
_STPS = frozenset(StpMode)


def check_place(spec: SymbolSpec, cmd: PlaceOrder) -> RejectCode:
    if not cmd.account:
        return RejectCode.INVALID_ACCOUNT
    code = _check_enums(cmd)
    if code:
        return code
    if len(cmd.client_order_id) > MAX_CLIENT_ORDER_ID:
        return RejectCode.CLIENT_ORDER_ID_TOO_LONG
    if spec.status != SymbolStatus.TRADING:
        return RejectCode.SYMBOL_HALTED
    is_limit = cmd.order_type == OrderType.LIMIT
    if cmd.post_only and (not is_limit or cmd.time_in_force != TimeInForce.GTC):
        return RejectCode.POST_ONLY_NOT_ALLOWED
    price = cmd.price
    if is_limit:
        code = check_price(spec, price)
        if code:
            return code
    elif price != 0:
        return RejectCode.INVALID_PRICE
    code = check_quantity(spec, cmd.quantity)
    if code:
        return code
    if is_limit and price * cmd.quantity > INT64_MAX:
        return RejectCode.NOTIONAL_OVERFLOW
    return RejectCode.NONE


def _check_enums(cmd: PlaceOrder) -> RejectCode:
    if cmd.side not in _SIDES:
        return RejectCode.INVALID_SIDE
    if cmd.order_type not in _TYPES:
        return RejectCode.INVALID_ORDER_TYPE
    if cmd.time_in_force not in _TIFS:
        return RejectCode.INVALID_TIME_IN_FORCE
    if cmd.stp not in _STPS:
        return RejectCode.INVALID_STP_MODE
    return RejectCode.NONE


def check_price(spec: SymbolSpec, price: int) -> RejectCode:
    if price <= 0 or price > INT64_MAX:
        return RejectCode.INVALID_PRICE
    if price % spec.tick_size:
        return RejectCode.PRICE_NOT_TICK_MULTIPLE
    return RejectCode.NONE


def check_quantity(spec: SymbolSpec, quantity: int) -> RejectCode:
    if quantity <= 0 or quantity > INT64_MAX:
        return RejectCode.INVALID_QUANTITY
    if quantity % spec.lot_size:
        return RejectCode.QUANTITY_NOT_LOT_MULTIPLE
    if quantity < spec.min_quantity:
        return RejectCode.QUANTITY_BELOW_MIN
    if quantity > spec.max_quantity:
        return RejectCode.QUANTITY_ABOVE_MAX
    return RejectCode.NONE


def check_amend_fields(spec: SymbolSpec, cmd: AmendOrder) -> RejectCode:
    """Checks 5-6 of AmendOrder: the new fields on their own (0 = unchanged)."""
    if cmd.new_price:
        if cmd.new_price < 0:
            return RejectCode.INVALID_PRICE
        code = check_price(spec, cmd.new_price)
        if code:
            return code
    if cmd.new_quantity:
        if cmd.new_quantity < 0:
            return RejectCode.INVALID_QUANTITY
        return check_quantity(spec, cmd.new_quantity)
    return RejectCode.NONE


def valid_side(side: object) -> bool:
    return side in _SIDES
