"""Price levels and book sides: the data structures under one symbol's book.

A side keeps its price levels in a dict and their keys in an ascending list, where the
key is the price for bids and minus the price for asks, so the best level of either side
is always ``keys[-1]``: reading it is O(1), and the churn of a real book (orders near the
touch) inserts and removes near the end of the list, where ``list.insert`` moves little.

Cancels are lazy: a cancelled order gets ``leaves = 0`` and stays in its level's deque
until matching pops it or the level compacts (when dead entries outnumber live ones), so
a cancel is O(1) and FIFO order is never disturbed.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque

from .types import Level, OpenOrder, Side

_COMPACT_MIN_DEAD = 16


class RestingOrder:
    """An open order in the book. Mutable on purpose: fills update it in place."""

    __slots__ = (
        "account",
        "client_order_id",
        "cum",
        "leaves",
        "level",
        "order_id",
        "post_only",
        "price",
        "priority",
        "side",
        "stp",
    )

    def __init__(
        self,
        order_id: int,
        account: str,
        client_order_id: str,
        side: int,
        price: int,
        cum: int,
        leaves: int,
        priority: int,
        stp: int,
        post_only: bool,
    ) -> None:
        self.order_id = order_id
        self.account = account
        self.client_order_id = client_order_id
        self.side = side
        self.price = price
        self.cum = cum
        self.leaves = leaves
        self.priority = priority
        self.stp = stp
        self.post_only = post_only
        self.level: PriceLevel | None = None

    def snapshot(self) -> OpenOrder:
        return OpenOrder(
            self.order_id,
            self.account,
            self.client_order_id,
            self.side,
            self.price,
            self.cum + self.leaves,
            self.cum,
            self.leaves,
            self.priority,
            self.stp,
            self.post_only,
        )


class PriceLevel:
    """A FIFO queue of orders at one price; ``total`` and ``count`` cover live orders only."""

    __slots__ = ("count", "dead", "key", "price", "queue", "total")

    def __init__(self, price: int, key: int) -> None:
        self.price = price
        self.key = key
        self.queue: deque[RestingOrder] = deque()
        self.total = 0
        self.count = 0
        self.dead = 0

    def live_orders(self) -> list[RestingOrder]:
        return [order for order in self.queue if order.leaves]

    def compact(self) -> None:
        """Drop dead entries; called when they outnumber live ones, so amortised O(1)."""
        self.queue = deque(self.live_orders())
        self.dead = 0


class BookSide:
    """All levels of one side, best last in ``keys``."""

    __slots__ = ("keys", "levels", "sign")

    def __init__(self, side: Side) -> None:
        self.sign = 1 if side == Side.BUY else -1
        self.keys: list[int] = []
        self.levels: dict[int, PriceLevel] = {}

    def clear(self) -> None:
        """Empty the side, unlinking each order from its level. An order and its level refer
        to each other, and the shard keeps long-lived objects out of the cycle collector's
        reach (gc.freeze): a dropped book whose cycles were left in place is never freed."""
        for level in self.levels.values():
            for order in level.queue:
                order.level = None
            level.queue.clear()
        self.levels.clear()
        self.keys.clear()

    def best_price(self) -> int | None:
        keys = self.keys
        return self.sign * keys[-1] if keys else None

    def level_at(self, price: int) -> PriceLevel | None:
        return self.levels.get(self.sign * price)

    def enqueue(self, order: RestingOrder) -> None:
        self.enqueue_at(order, self.levels.get(self.sign * order.price))

    def enqueue_at(self, order: RestingOrder, level: PriceLevel | None) -> None:
        """Queue ``order`` at the back of ``level``, its live level looked up by the caller."""
        if level is None:
            key = self.sign * order.price
            level = self.levels[key] = PriceLevel(order.price, key)
            keys = self.keys
            if not keys or key > keys[-1]:
                keys.append(key)
            else:
                insort(keys, key)
        level.queue.append(order)
        level.total += order.leaves
        level.count += 1
        order.level = level

    def withdraw(self, order: RestingOrder) -> None:
        """Take a live order out of its level (lazily: it stays queued as dead)."""
        level = order.level
        assert level is not None
        level.total -= order.leaves
        level.count -= 1
        order.leaves = 0
        order.level = None
        if not level.count:
            self.drop(level)
        else:
            level.dead += 1
            if level.dead > _COMPACT_MIN_DEAD and level.dead > level.count:
                level.compact()

    def drop(self, level: PriceLevel) -> None:
        keys = self.keys
        key = level.key
        if keys[-1] == key:
            keys.pop()
        else:
            del keys[bisect_left(keys, key)]
        del self.levels[key]

    def depth(self, n: int) -> list[Level]:
        # tuple.__new__: Level's generated __new__ is a Python call per level, and committed
        # views take the top levels of every touched symbol after every batch.
        levels = self.levels
        new = tuple.__new__
        return [
            new(Level, (level.price, level.total, level.count))
            for level in (levels[key] for key in reversed(self.keys[-n:] if n > 0 else []))
        ]

    def orders_best_first(self) -> list[RestingOrder]:
        levels = self.levels
        return [order for key in reversed(self.keys) for order in levels[key].live_orders()]
