"""`spotmatch demo`: what `make run` shows a newcomer.

Part 1: a scripted session through the matching engine (price-time priority, maker-price
trades, an IOC remainder expiring, self-trade prevention, post-only, the L2 book).
Part 2: a real shard process on a private Postgres on loopback, driven over gRPC for a few
seconds; every acknowledged order is then checked in Postgres. Later issues replace part 2
with the full local cluster (routers, shards, etcd, Redis).
"""

from __future__ import annotations

import asyncio

from shard.engine import (
    Command,
    MatchingEngine,
    OrderStatus,
    OrderType,
    PlaceOrder,
    RejectCode,
    Report,
    Side,
    StpMode,
    SymbolSpec,
    TimeInForce,
)

from .bench.engine_bench import bench_engine
from .bench.output import Progress
from .bench.shard_bench import ShardBenchParams, bench_shard

SYMBOL = "BTC-USD"

SCRIPT: list[tuple[str, Command]] = [
    ("alice rests 5 @ 100.00", PlaceOrder(SYMBOL, "alice", Side.SELL, 5, 10_000)),
    ("bob rests 3 @ 100.00 (behind alice)", PlaceOrder(SYMBOL, "bob", Side.SELL, 3, 10_000)),
    ("carol rests 4 @ 100.50", PlaceOrder(SYMBOL, "carol", Side.SELL, 4, 10_050)),
    ("dave bids 2 @ 99.50", PlaceOrder(SYMBOL, "dave", Side.BUY, 2, 9_950)),
    (
        "erin buys 10 IOC up to 100.00: takes alice then bob (FIFO), the rest expires",
        PlaceOrder(SYMBOL, "erin", Side.BUY, 10, 10_000, time_in_force=TimeInForce.IOC),
    ),
    (
        "carol buys 1 MARKET with STP EXPIRE_TAKER: would trade with herself",
        PlaceOrder(SYMBOL, "carol", Side.BUY, 1, 0, OrderType.MARKET, stp=StpMode.EXPIRE_TAKER),
    ),
    ("dave buys 2 @ 100.50 post-only: would take, rejected", PlaceOrder(
        SYMBOL, "dave", Side.BUY, 2, 10_050, post_only=True)),
]  # fmt: skip


def _describe(report: Report) -> str:
    reason = "" if not report.reject_code else f" ({RejectCode(report.reject_code).name})"
    text = (
        f"  seq {report.seq:>2}  {OrderStatus(report.status).name}{reason}  "
        f"filled {report.cum_qty}, leaves {report.leaves_qty}"
    )
    for fill in report.fills:
        price = fill.price / 100
        text += f"\n           fill {fill.quantity} @ {price:.2f} against {fill.maker_account}"
    return text


def run_demo() -> int:
    engine = MatchingEngine()
    engine.add_symbol(SymbolSpec(SYMBOL, symbol_id=1, tick_size=50))
    print(f"spotmatch engine demo: {SYMBOL}, prices in cents, tick 0.50\n")
    for title, cmd in SCRIPT:
        print(title)
        print(_describe(engine.execute(cmd)))
    book = engine.book(SYMBOL)
    print("\nL2 book now:")
    for level in book.depth(Side.SELL, 5)[::-1]:
        print(f"  ask {level.price / 100:>8.2f} x {level.quantity} ({level.order_count} order(s))")
    for level in book.depth(Side.BUY, 5):
        print(f"  bid {level.price / 100:>8.2f} x {level.quantity} ({level.order_count} order(s))")
    print("\nquick engine benchmark (depth 10,000; full run: spotmatch bench engine):")
    _, lines = bench_engine((10_000,), 50_000, 1, 1, Progress())
    print("\n".join(lines))
    print("\ndurable shard: private Postgres + shard process on loopback, 4 gRPC Trade streams")
    print("(3 s per run; full run: spotmatch bench shard)")
    params = ShardBenchParams(duration_s=3.0, recovery_orders=20_000)
    result, lines = asyncio.run(bench_shard(params, Progress()))
    print("\n".join(lines))
    return 0 if result["missing_acked_orders"] == 0 else 1
