"""`spotmatch` and its subcommands. Each subcommand lives with the part it runs; this module
only builds the argument parser and dispatches."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from spotmatch import bench_cli, shard_cli

Handler = Callable[[argparse.Namespace], int]

DESCRIPTION = """\
spotmatch: the order-matching tier of a crypto spot exchange.

Routers forward gRPC order calls and streams to shard nodes; each shard matches its symbols
in memory with price-time priority and makes every result durable in PostgreSQL before
anyone is told."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spotmatch",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    bench_cli.register(commands)
    shard_cli.register(commands)
    demo = commands.add_parser(
        "demo",
        help="a short guided session through the matching engine",
        description="Run a scripted trading session through the engine, show the reports "
        "and the L2 book, then a quick engine benchmark.",
    )
    demo.set_defaults(handler=_run_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run_demo(args: argparse.Namespace) -> int:
    from tools.demo import run_demo

    return run_demo()
