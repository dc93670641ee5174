"""`python -m tools.bench.md_encode_cost [ROUNDS]`: what one symbol's market-data round
costs a shard to encode (shard.publisher_messages.encode: the 50+50-level snapshot, the
delta from the last published book, the trades), with and without trades. Prints process
CPU per round, three times (the machine is noisy: compare medians against a baseline run
the same way; docs/benchmarks.md, 2026-12-07)."""

from __future__ import annotations

import random
import sys
import time

from shard.engine import Fill, Level
from shard.pipeline import BookView
from shard.publisher_messages import TradeBatch, encode

DEPTH = 50
TRADE_BATCHES = 15  # a busy symbol's commands with fills in one 20 ms round
MID = 100_000


def _view(rng: random.Random, seq: int) -> BookView:
    bids = [Level(MID - i, rng.randint(1, 50), rng.randint(1, 5)) for i in range(1, DEPTH + 1)]
    asks = [Level(MID + i, rng.randint(1, 50), rng.randint(1, 5)) for i in range(1, DEPTH + 1)]
    return BookView("BENCH-1", seq, bids, asks, False)


def _trades(now: int) -> list[TradeBatch]:
    def fill(i: int) -> Fill:
        return Fill(7, "mm-1", f"c-{i}", 9, MID + i, 3, 0, 3)

    return [
        TradeBatch(100 + i, 1, tuple(fill(i) for _ in range(1 + i % 2)), now)
        for i in range(TRADE_BATCHES)
    ]


def _per_round(rounds: int, old: BookView, new: BookView, trades: list[TradeBatch]) -> float:
    started = time.process_time()
    for _ in range(rounds):
        encode(new, old, "", trades, DEPTH, time.time_ns())
    return 1e6 * (time.process_time() - started) / rounds


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000
    rng = random.Random(1)
    old, new = _view(rng, 100), _view(rng, 160)
    trades = _trades(time.time_ns())
    for _ in range(3):
        with_trades = _per_round(rounds, old, new, trades)
        without = _per_round(rounds, old, new, [])
        print(
            f"encode per symbol-round: {with_trades:6.0f} us with {TRADE_BATCHES} trade "
            f"batches, {without:6.0f} us without"
        )


if __name__ == "__main__":
    main()
