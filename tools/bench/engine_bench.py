"""`spotmatch bench engine`: the matching engine against the bare baseline book.

Both books get the same prefilled depth and the same seeded flow; runs alternate between
them so that noise on a shared machine hits both alike; medians of several runs are
reported together with their ratio.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from shard.engine import (
    CancelOrder,
    Command,
    MatchingEngine,
    OrderType,
    PlaceOrder,
    Side,
    SymbolSpec,
    TimeInForce,
)

from .baseline_book import BaselineBook
from .flow import CANCEL, LIMIT, SYMBOL_ID, Flow, Op, make_flow
from .output import Progress

SYMBOL = "BENCH-USD"
DEFAULT_DEPTHS = (100, 10_000, 100_000)


def to_command(op: Op) -> Command:
    kind, is_buy, price, qty, oid, account = op
    side = Side.BUY if is_buy else Side.SELL
    if kind == LIMIT:
        return PlaceOrder(SYMBOL, f"acct-{account}", side, qty, price)
    if kind == CANCEL:
        return CancelOrder(SYMBOL, f"acct-{account}", order_id=oid)
    return PlaceOrder(SYMBOL, f"acct-{account}", side, qty, 0, OrderType.MARKET, TimeInForce.IOC)


def _time_engine(flow: Flow, prefill: list[Command], cmds: list[Command]) -> float:
    engine = MatchingEngine()
    engine.add_symbol(SymbolSpec(SYMBOL, SYMBOL_ID))
    engine.execute_batch(prefill)
    return _timed(engine.execute, cmds)


def _time_baseline(flow: Flow) -> float:
    book = BaselineBook()
    limit, cancel, market = book.limit, book.cancel, book.market
    for _, is_buy, price, qty, oid, _ in flow.prefill:
        limit(oid, is_buy, price, qty)

    def apply(op: Op) -> object:
        kind, is_buy, price, qty, oid, _ = op
        if kind == LIMIT:
            return limit(oid, is_buy, price, qty)
        if kind == CANCEL:
            return cancel(oid)
        return market(oid, is_buy, qty)

    return _timed(apply, flow.ops)


def _timed(apply: Callable[[Any], object], items: list[Any]) -> float:
    """Ops per second of ``apply`` over ``items``, with the prefilled book frozen out of GC."""
    gc.collect()
    gc.freeze()
    try:
        start = time.perf_counter()
        for item in items:
            apply(item)
        elapsed = time.perf_counter() - start
    finally:
        gc.unfreeze()
    return len(items) / elapsed


def run_depth(depth: int, n_ops: int, runs: int, seed: int, progress: Progress) -> dict[str, Any]:
    progress.update(f"depth {depth:,}: generating {n_ops:,} ops")
    flow = make_flow(depth, n_ops, seed)
    prefill = [to_command(op) for op in flow.prefill]
    cmds = [to_command(op) for op in flow.ops]
    engine_rates: list[float] = []
    baseline_rates: list[float] = []
    for run in range(runs):
        engine_rates.append(_time_engine(flow, prefill, cmds))
        baseline_rates.append(_time_baseline(flow))
        progress.update(
            f"depth {depth:,}: run {run + 1}/{runs}  engine {engine_rates[-1]:,.0f} ops/s"
            f"  baseline {baseline_rates[-1]:,.0f} ops/s"
        )
    engine_ops = statistics.median(engine_rates)
    baseline_ops = statistics.median(baseline_rates)
    return {
        "depth": depth,
        "mean_resting_orders": round(flow.mean_depth),
        "ops": n_ops,
        "runs": runs,
        "ops_per_sec": round(engine_ops),
        "baseline_ops_per_sec": round(baseline_ops),
        "ratio": round(engine_ops / baseline_ops, 3),
        "engine_runs": [round(r) for r in engine_rates],
        "baseline_runs": [round(r) for r in baseline_rates],
    }


def bench_engine(
    depths: tuple[int, ...], n_ops: int, runs: int, seed: int, progress: Progress
) -> tuple[dict[str, Any], list[str]]:
    results = [run_depth(d, n_ops, runs, seed, progress) for d in depths]
    progress.done()
    lines = [f"{'depth':>8} {'engine ops/s':>14} {'baseline ops/s':>15} {'ratio':>6}"]
    for r in results:
        engine_ops, baseline_ops = r["ops_per_sec"], r["baseline_ops_per_sec"]
        lines.append(f"{r['depth']:>8,} {engine_ops:>14,} {baseline_ops:>15,} {r['ratio']:>6.2f}")
    result = {"target": "engine", "seed": seed, "results": results}
    return result, lines
