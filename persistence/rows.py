"""Row types the writer persists and the loaders return: persistence's own vocabulary.

The shard converts engine reports into these (persistence imports neither shard nor router).
Column orders here are the COPY column lists in copy_text.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class OrderRow(NamedTuple):
    """An order first accepted in this batch, in its state at the end of the batch."""

    order_id: int
    symbol: str
    account: str
    client_order_id: str  # "" = none (stored as NULL)
    side: int
    order_type: int
    time_in_force: int
    post_only: bool
    stp: int
    price: int
    quantity: int
    cum_qty: int
    leaves_qty: int
    status: int
    priority: int
    created_seq: int
    updated_seq: int


class OrderUpdate(NamedTuple):
    """The new state of an order accepted in an earlier batch; None = unchanged."""

    order_id: int
    status: int
    price: int | None
    quantity: int | None
    cum_qty: int | None
    leaves_qty: int
    priority: int | None
    updated_seq: int


class FillRow(NamedTuple):
    symbol: str
    seq: int
    match_index: int
    maker_order_id: int
    taker_order_id: int
    maker_account: str
    taker_account: str
    price: int
    quantity: int
    maker_leaves_qty: int  # the maker's remaining quantity after this fill


class JournalRow(NamedTuple):
    symbol: str
    seq: int
    kind: int
    account: str
    client_order_id: str
    order_id: int
    side: int
    order_type: int
    time_in_force: int
    post_only: bool
    stp: int
    price: int
    quantity: int
    symbol_status: int
    status: int
    reject_code: int
    cum_qty: int
    leaves_qty: int
    epoch: int
    expired_order_ids: str  # a Postgres array literal: the orders the command expired


@dataclass
class BatchRows:
    """Everything one batch makes durable, plus the epoch it was written under per symbol."""

    epochs: dict[str, int] = field(default_factory=dict)
    orders: dict[int, OrderRow] = field(default_factory=dict)
    updates: dict[int, OrderUpdate] = field(default_factory=dict)
    fills: list[FillRow] = field(default_factory=list)
    journal: list[JournalRow] = field(default_factory=list)
    symbol_status: dict[str, int] = field(default_factory=dict)  # halts and resumes

    def __len__(self) -> int:
        return len(self.orders) + len(self.updates) + len(self.fills) + len(self.journal)


class SymbolRow(NamedTuple):
    symbol: str
    symbol_id: int
    tick_size: int
    lot_size: int
    min_quantity: int
    max_quantity: int
    status: int


class RestingOrderRow(NamedTuple):
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


@dataclass(frozen=True)
class SymbolSnapshot:
    """What recovery needs to rebuild one symbol's book exactly."""

    symbol: SymbolRow
    last_seq: int
    epoch: int
    resting: list[RestingOrderRow]
