"""The matching loop: one taker against the opposite side, best level first, FIFO inside."""

from __future__ import annotations

from collections.abc import Callable

from .levels import BookSide, PriceLevel, RestingOrder
from .types import Fill, StpMode

_new = tuple.__new__  # skips NamedTuple's Python-level __new__ on the hot path
_EXPIRE_TAKER = StpMode.EXPIRE_TAKER
_EXPIRE_MAKER = StpMode.EXPIRE_MAKER


class TakeResult:
    """What one taker did against the book."""

    __slots__ = ("expired", "fills", "remaining", "stopped")

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining
        self.fills: list[Fill] = []
        self.expired: list[int] = []
        self.stopped = False


def take(
    opposite: BookSide,
    result: TakeResult,
    taker_id: int,
    account: str,
    stp: int | None,
    min_key: int,
    forget: Callable[[RestingOrder], None],
) -> TakeResult:
    """Match until filled, out of acceptable prices, or stopped by self-trade prevention.

    ``stp`` is None when no maker can belong to the taker's account (or STP is off), so
    the common case pays one ``is None`` test per maker. ``forget`` drops a maker that
    leaves the book from the owner's indexes.
    """
    keys = opposite.keys
    levels = opposite.levels
    fills = result.fills
    remaining = result.remaining
    while remaining and keys:
        key = keys[-1]
        if key < min_key:
            break
        level = levels[key]
        queue = level.queue
        price = level.price
        while remaining:
            maker = queue[0]
            leaves = maker.leaves
            if not leaves:
                queue.popleft()
                level.dead -= 1
                continue
            if stp is not None and maker.account == account:
                if stp != _EXPIRE_TAKER:
                    _expire_maker(result, level, maker, forget)
                if stp != _EXPIRE_MAKER:
                    result.stopped = True
                    break
                if not level.count:
                    break
                continue
            if leaves <= remaining:
                remaining -= leaves
                maker.cum = cum = maker.cum + leaves
                maker.leaves = 0
                queue.popleft()
                level.total -= leaves
                level.count -= 1
                fills.append(_new(Fill, (maker.order_id, maker.account, maker.client_order_id,
                                         taker_id, price, leaves, 0, cum)))  # fmt: skip
                forget(maker)
                if not level.count:
                    break
            else:
                maker.cum = cum = maker.cum + remaining
                maker.leaves = leaves = leaves - remaining
                level.total -= remaining
                fills.append(_new(Fill, (maker.order_id, maker.account, maker.client_order_id,
                                         taker_id, price, remaining, leaves, cum)))  # fmt: skip
                remaining = 0
        if not level.count:
            keys.pop()
            del levels[key]
        if result.stopped:
            break
    result.remaining = remaining
    return result


def _expire_maker(
    result: TakeResult,
    level: PriceLevel,
    maker: RestingOrder,
    forget: Callable[[RestingOrder], None],
) -> None:
    """Remove a self-trading maker from the front of its level (STP EXPIRE_MAKER/BOTH)."""
    level.queue.popleft()
    level.total -= maker.leaves
    level.count -= 1
    maker.leaves = 0
    forget(maker)
    result.expired.append(maker.order_id)
