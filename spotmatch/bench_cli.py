"""`spotmatch bench ...`: benchmarks with a human summary, a results file and JSON output."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tools.bench.engine_bench import DEFAULT_DEPTHS, bench_engine
from tools.bench.output import Progress, write_result


def register(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="run a benchmark (engine; later shard, cluster) and report JSON",
        description="Benchmarks. Each prints a summary, writes the result to a JSON file "
        "and, with --json, prints that JSON object as the last line.",
    )
    targets = bench.add_subparsers(dest="target", metavar="TARGET", required=True)
    engine = targets.add_parser(
        "engine",
        help="the matching engine against a bare heap-of-levels book",
        description="Drive the matching engine and a bare baseline book (heap of price "
        "levels, FIFO deques, fills as tuples) through the same seeded flow: ~60%% passive "
        "limits near the touch, 30%% cancels, 10%% marketable orders, at several resting "
        "depths. Reports ops/s (median of --runs) for both and their ratio.",
    )
    engine.add_argument(
        "--depths", type=_depths, default=DEFAULT_DEPTHS, metavar="N[,N...]",
        help="resting orders to hold the book at (default: 100,10000,100000)",
    )  # fmt: skip
    engine.add_argument(
        "--ops", type=int, default=100_000, help="measured ops per run (default: 100000)"
    )
    engine.add_argument(
        "--runs", type=int, default=5, help="runs per depth; medians are reported (default: 5)"
    )
    engine.add_argument("--seed", type=int, default=1, help="flow seed (default: 1)")
    _add_output_flags(engine)
    engine.set_defaults(handler=_run_engine)
    _register_shard(targets)


def _register_shard(targets: Any) -> None:
    shard = targets.add_parser(
        "shard",
        help="a shard process with a real Postgres, driven over gRPC Trade streams",
        description="Start a private Postgres and a shard process on loopback, then drive "
        "the shard with batched Trade streams from several clients: a max-throughput run, "
        "an open-loop run at --rate (latency from each message's due time), the same flow "
        "through the engine alone, and a timed recovery of 100,000 resting orders. "
        "Reconciles every acknowledged order against Postgres.",
    )
    shard.add_argument(
        "--clients", type=int, default=4, help="concurrent Trade streams (default 4)"
    )
    shard.add_argument("--batch", type=int, default=100, help="orders per message (default 100)")
    shard.add_argument(
        "--window", type=int, default=4, help="messages in flight per stream (default 4)"
    )
    shard.add_argument("--duration", type=float, default=10.0, help="seconds per run (default 10)")
    shard.add_argument(
        "--rate", type=float, help="open-loop orders/s (default: half the measured max)"
    )
    shard.add_argument("--seed", type=int, default=1, help="flow seed (default 1)")
    _add_output_flags(shard)
    shard.set_defaults(handler=_run_shard)


def _add_output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON on the last line"
    )
    parser.add_argument(
        "--out", type=Path, help="result file (default: bench-results/TARGET-TIME.json)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress display")


def _depths(text: str) -> tuple[int, ...]:
    try:
        depths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if any(d < 1 for d in depths):
        raise argparse.ArgumentTypeError("depths must be positive")
    return depths


def _run_engine(args: argparse.Namespace) -> int:
    if args.ops < 1 or args.runs < 1:
        raise SystemExit("spotmatch bench engine: --ops and --runs must be positive")
    result, lines = bench_engine(args.depths, args.ops, args.runs, args.seed, Progress(args.quiet))
    write_result(result, args.out, args.json, lines)
    return 0


def _run_shard(args: argparse.Namespace) -> int:
    import asyncio

    from tools.bench.shard_bench import ShardBenchParams, bench_shard

    if min(args.clients, args.batch, args.window) < 1 or args.duration <= 0:
        raise SystemExit("spotmatch bench shard: counts and --duration must be positive")
    params = ShardBenchParams(
        clients=args.clients,
        batch=args.batch,
        window=args.window,
        duration_s=args.duration,
        rate=args.rate,
        seed=args.seed,
    )
    result, lines = asyncio.run(bench_shard(params, Progress(args.quiet)))
    write_result(result, args.out, args.json, lines)
    return 0 if result["missing_acked_orders"] == 0 else 1
