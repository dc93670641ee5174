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
