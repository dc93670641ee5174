"""Domain types of the matching core: commands in, reports out.

Everything here is pure data. Enum values deliberately equal the numbers of the
matching.v1 protobuf enums (whose zero is *_UNSPECIFIED), so the service edge converts
with a plain int cast. Fields that carry such a number are typed ``int``, not the enum:
they hold the number the wire sent (validation rejects one that names no member), and the
compiled hot path (decision 0021) checks declared types when it runs, as Python does not.

Semantics (DESIGN section 3), fixed here because the engine, the reference matcher and
the persistence layer must agree on them exactly:

* Prices and quantities are ints in the symbol's minor units; both must fit int64, and
  so must price * quantity (notional) and the total quantity resting at one level.
* Every command addressed to a known symbol consumes that symbol's next sequence number,
  rejected ones included; the report carries it. Unknown symbols get seq 0.
* A new order's id is ``symbol_id << ORDER_ID_SHIFT | seq`` — unique across restarts and
  failovers because seq is durable and gap-free. Rejected placements get order_id 0.
* Resting orders carry ``priority`` = the seq of the command that last queued them; a
  level is FIFO by priority. Reduce-only amends keep it; reprices and increases take the
  amend's seq.
* Trades print at the maker's price. STP compares accounts; the taker's mode decides.
* ``AmendOrder.new_quantity`` is the new *total* quantity (FIX OrderQty): leaves become
  ``new_quantity - cum_qty`` and must stay positive.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

INT64_MAX = (1 << 63) - 1
ORDER_ID_SHIFT = 40  # seq occupies the low 40 bits: 1.1e12 commands per symbol


class Side(IntEnum):
    BUY = 1
    SELL = 2


class OrderType(IntEnum):
    LIMIT = 1
    MARKET = 2


class TimeInForce(IntEnum):
    GTC = 1
    IOC = 2
    FOK = 3


class StpMode(IntEnum):
    NONE = 1
    EXPIRE_TAKER = 2
    EXPIRE_MAKER = 3
    EXPIRE_BOTH = 4


class OrderStatus(IntEnum):
    NEW = 1
    PARTIALLY_FILLED = 2
    FILLED = 3
    CANCELED = 4
    REJECTED = 5
    EXPIRED = 6


class SymbolStatus(IntEnum):
    TRADING = 1
    HALTED = 2


class RejectCode(IntEnum):
    """Why a command was rejected, or why an order expired. NONE means accepted."""

    NONE = 0
    UNKNOWN_SYMBOL = 1
    SYMBOL_HALTED = 2
    INVALID_ACCOUNT = 3
    INVALID_SIDE = 4
    INVALID_ORDER_TYPE = 5
    INVALID_TIME_IN_FORCE = 6
    INVALID_STP_MODE = 7
    INVALID_PRICE = 8
    PRICE_NOT_TICK_MULTIPLE = 9
    INVALID_QUANTITY = 10
    QUANTITY_NOT_LOT_MULTIPLE = 11
    QUANTITY_BELOW_MIN = 12
    QUANTITY_ABOVE_MAX = 13
    NOTIONAL_OVERFLOW = 14
    LEVEL_QUANTITY_OVERFLOW = 15
    POST_ONLY_WOULD_TAKE = 16
    POST_ONLY_NOT_ALLOWED = 17
    FOK_NOT_FILLABLE = 18
    UNKNOWN_ORDER = 19
    MISSING_ORDER_REFERENCE = 20
    AMEND_QUANTITY_NOT_ABOVE_FILLED = 21
    DUPLICATE_CLIENT_ORDER_ID = 22
    SELF_TRADE_PREVENTED = 23
    CLIENT_ORDER_ID_TOO_LONG = 24


class SymbolSpec(NamedTuple):
    """Reference data of one symbol. min/max apply to an order's total quantity."""

    symbol: str
    symbol_id: int
    tick_size: int = 1
    lot_size: int = 1
    min_quantity: int = 1
    max_quantity: int = INT64_MAX
    status: int = SymbolStatus.TRADING


# --- commands (imperative) -------------------------------------------------------------


class PlaceOrder(NamedTuple):
    symbol: str
    account: str
    side: int
    quantity: int
    price: int = 0  # must be 0 for MARKET
    order_type: int = OrderType.LIMIT
    time_in_force: int = TimeInForce.GTC
    post_only: bool = False  # LIMIT + GTC only; rejected (never repriced) if it would take
    stp: int = StpMode.NONE
    client_order_id: str = ""  # unique per account among open orders; "" = none


class CancelOrder(NamedTuple):
    """Cancel by order_id (non-zero) or else by client_order_id (non-empty)."""

    symbol: str
    account: str
    order_id: int = 0
    client_order_id: str = ""


class AmendOrder(NamedTuple):
    """Change price and/or total quantity; 0 leaves a field unchanged."""

    symbol: str
    account: str
    order_id: int = 0
    client_order_id: str = ""
    new_price: int = 0
    new_quantity: int = 0


class MassCancel(NamedTuple):
    """Cancel every open order of ``account`` on ``symbol`` (one side if ``side`` is set)."""

    symbol: str
    account: str
    side: int | None = None


class SetSymbolStatus(NamedTuple):
    """Halt or resume trading; sequenced like any command so replay is deterministic."""

    symbol: str
    status: int


Command = PlaceOrder | CancelOrder | AmendOrder | MassCancel | SetSymbolStatus


# --- results (past tense: what happened) -----------------------------------------------


class Fill(NamedTuple):
    """One trade: the taker against one resting maker, at the maker's price."""

    maker_order_id: int
    maker_account: str
    maker_client_order_id: str
    taker_order_id: int
    price: int
    quantity: int
    maker_leaves: int  # maker's remaining quantity after this fill (0: maker filled)
    maker_cum: int  # maker's cumulative filled quantity after this fill


class Report(NamedTuple):
    """The outcome of one command, for the order it addressed.

    ``expired`` lists other orders of ``account`` that the command removed: makers
    expired by self-trade prevention, or the orders a mass cancel cancelled.
    ``priority`` is the order's queue priority if it rests after the command, else 0.
    ``side`` is the order's Side number (1 BUY, 2 SELL; may be a Side member: compare by
    value): a PlaceOrder's own side (rejected ones included, as sent), the addressed order's
    side for a cancel or amend that found it; 0 where no single order is concerned (mass
    cancel, SetSymbolStatus) or a cancel or amend found no order (unknown order or symbol,
    missing reference, invalid account, amend while halted).
    """

    symbol: str
    seq: int
    order_id: int
    client_order_id: str
    account: str
    status: int
    reject_code: int
    price: int
    cum_qty: int
    leaves_qty: int
    priority: int
    fills: tuple[Fill, ...]
    expired: tuple[int, ...]
    side: int


class Level(NamedTuple):
    price: int
    quantity: int
    order_count: int


class OpenOrder(NamedTuple):
    """A resting order as queries and recovery see it; ``quantity`` = cum_qty + leaves_qty."""

    order_id: int
    account: str
    client_order_id: str
    side: int
    price: int
    quantity: int
    cum_qty: int
    leaves_qty: int
    priority: int
    stp: int
    post_only: bool
