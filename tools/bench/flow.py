"""A seeded, realistic order flow at a steady resting depth, shared by engine and baseline.

About 60 % passive limit orders near the touch, 30 % cancels of live orders and 10 %
marketable (MARKET) orders. The flow is generated once against a baseline book, so that
cancels name orders that are really live; marketable sizes adapt to hold the depth near
its target while the mix stays fixed. Order ids follow the engine's scheme (one sequence
number per command) so both books see the same ids.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from shard.engine import ORDER_ID_SHIFT

from .baseline_book import BaselineBook

LIMIT, CANCEL, MARKET = 0, 1, 2
MID = 1_000_000
SYMBOL_ID = 1
ACCOUNTS = 200

Op = tuple[int, bool, int, int, int, int]  # kind, is_buy, price, qty, order id, account no.


@dataclass(frozen=True)
class Flow:
    depth: int
    prefill: list[Op]
    ops: list[Op]
    mean_depth: float  # resting orders, averaged over the measured ops


def order_id(seq: int) -> int:
    return SYMBOL_ID << ORDER_ID_SHIFT | seq


def make_flow(depth: int, n_ops: int, seed: int) -> Flow:
    gen = _FlowGenerator(seed, depth)
    prefill = [gen.limit(order_id(i + 1)) for i in range(depth)]
    ops: list[Op] = []
    depth_sum = 0
    for i in range(n_ops):
        ops.append(gen.next_op(order_id(depth + i + 1)))
        depth_sum += len(gen.book.orders)
    return Flow(depth, prefill, ops, depth_sum / max(1, n_ops))


class _FlowGenerator:
    """Draws ops and applies them to a baseline book to know which orders are live."""

    def __init__(self, seed: int, depth: int) -> None:
        self.rng = random.Random(seed)
        self.book = BaselineBook()
        self.target = depth
        self.spread = max(2, depth // 100)  # mean distance from the touch, in ticks
        self.live: list[int] = []
        self.owner: dict[int, int] = {}

    def next_op(self, oid: int) -> Op:
        r = self.rng.random()
        if r < 0.6:
            return self.limit(oid)
        if r < 0.9:
            return self._cancel(oid)
        return self._market(oid)

    def limit(self, oid: int) -> Op:
        rng = self.rng
        is_buy = rng.random() < 0.5
        offset = 1 + int(rng.expovariate(1.0 / self.spread))
        price = MID - offset if is_buy else MID + offset
        op = (LIMIT, is_buy, price, rng.randint(1, 10), oid, rng.randrange(ACCOUNTS))
        self.book.limit(oid, is_buy, price, op[3])
        if oid in self.book.orders:
            self.live.append(oid)
            self.owner[oid] = op[5]
        return op

    def _cancel(self, oid: int) -> Op:
        live, orders = self.live, self.book.orders
        while live:
            i = self.rng.randrange(len(live))
            victim = live[i]
            live[i] = live[-1]
            live.pop()
            if victim in orders:
                self.book.cancel(victim)
                return (CANCEL, False, 0, 0, victim, self.owner.pop(victim))
        return (CANCEL, False, 0, 0, oid, 0)  # nothing live: a cancel of an unknown id

    def _market(self, oid: int) -> Op:
        # ~3 orders' worth at the target depth; more when above it, fewer when below.
        resting = len(self.book.orders)
        orders = max(1.0, 3.0 + 20.0 * (resting - self.target) / max(self.target, 1))
        rng = self.rng
        qty = max(1, int(rng.uniform(0.5, 1.5) * orders * 5.5))
        op = (MARKET, rng.random() < 0.5, 0, qty, oid, rng.randrange(ACCOUNTS))
        self.book.market(oid, op[1], qty)
        return op
