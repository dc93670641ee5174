"""The bare baseline book the engine is measured against (DESIGN section 10).

A plain heap of price levels with FIFO deques and fills as tuples; limit, cancel and
market only; no validation, sequence numbers, reports, STP or client order ids. Written
the straightforward way a competent engineer would, not handicapped: empty levels are
dropped from the dict at once and from the heap lazily, and the heap is rebuilt when
stale entries outnumber live levels.
"""

from __future__ import annotations

import heapq
from collections import deque

Fill = tuple[int, int, int, int]  # maker id, taker id, price, quantity


class _Side:
    __slots__ = ("heap", "levels", "sign")

    def __init__(self, sign: int) -> None:
        self.sign = sign  # heap key = -price for bids (max-heap), price for asks
        self.heap: list[int] = []
        self.levels: dict[int, deque[list[int]]] = {}

    def best(self) -> int | None:
        heap, levels = self.heap, self.levels
        while heap:
            price = heap[0] * self.sign
            if price in levels:
                return price
            heapq.heappop(heap)
        return None

    def add(self, entry: list[int], price: int) -> None:
        level = self.levels.get(price)
        if level is None:
            level = self.levels[price] = deque()
            heapq.heappush(self.heap, price * self.sign)
            if len(self.heap) > 2 * len(self.levels) + 64:
                self.heap = [p * self.sign for p in self.levels]
                heapq.heapify(self.heap)
        level.append(entry)


class BaselineBook:
    def __init__(self) -> None:
        self.bids = _Side(-1)
        self.asks = _Side(1)
        self.orders: dict[int, tuple[bool, int, list[int]]] = {}

    def limit(self, oid: int, is_buy: bool, price: int, qty: int) -> list[Fill]:
        fills: list[Fill] = []
        qty = self._match(oid, is_buy, price, qty, fills)
        if qty:
            entry = [oid, qty]
            (self.bids if is_buy else self.asks).add(entry, price)
            self.orders[oid] = (is_buy, price, entry)
        return fills

    def market(self, oid: int, is_buy: bool, qty: int) -> list[Fill]:
        fills: list[Fill] = []
        self._match(oid, is_buy, None, qty, fills)
        return fills

    def cancel(self, oid: int) -> bool:
        found = self.orders.pop(oid, None)
        if found is None:
            return False
        is_buy, price, entry = found
        levels = (self.bids if is_buy else self.asks).levels
        level = levels[price]
        level.remove(entry)
        if not level:
            del levels[price]
        return True

    def _match(self, oid: int, is_buy: bool, limit: int | None, qty: int, fills: list[Fill]) -> int:
        side = self.asks if is_buy else self.bids
        orders = self.orders
        while qty:
            best = side.best()
            if best is None or (limit is not None and (best > limit if is_buy else best < limit)):
                break
            level = side.levels[best]
            while qty and level:
                entry = level[0]
                take = min(qty, entry[1])
                fills.append((entry[0], oid, best, take))
                qty -= take
                entry[1] -= take
                if not entry[1]:
                    level.popleft()
                    del orders[entry[0]]
            if not level:
                del side.levels[best]
        return qty
