"""`spotmatch` and its subcommands. Each subcommand lives with the part it runs; this module
only builds the argument parser and dispatches."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from spotmatch import auth_cli, bench_cli, controller_cli, ctl_cli, router_cli, shard_cli, up_cli
from tools.hot_path import refuse_stale_build

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
    router_cli.register(commands)
    controller_cli.register(commands)
    ctl_cli.register(commands)
    up_cli.register(commands)
    auth_cli.register(commands)
    demo = commands.add_parser(
        "demo",
        help="what `make run` shows: a local cluster trading live, with a planned move",
        description="Start a local cluster (etcd, Postgres, Redis Cluster, 3 shards, 2 "
        "routers) under --run-dir, trade through a router with a live display, move a busy "
        "symbol half-way, check every acknowledged order in Postgres, print the cluster "
        "status, and keep serving until Ctrl-C. --engine instead walks through the matching "
        "engine alone.",
    )
    demo.add_argument("--run-dir", type=Path, default=Path(".run/demo"), help="default: .run/demo")
    demo.add_argument(
        "--duration", type=float, default=10.0, help="seconds of trading (default 10)"
    )
    demo.add_argument(
        "--no-wait", action="store_true", help="stop the cluster right after the summary"
    )
    demo.add_argument(
        "--engine", action="store_true", help="the engine walkthrough and a durable-shard run"
    )
    demo.set_defaults(handler=_run_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    refuse_stale_build()
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM (`timeout`, a supervisor) ends a command as Ctrl-C does, so what it started
    (a bench's Postgres, a demo's cluster) is stopped by its finally blocks and the atexit
    net (tools/services/process.py). By default SIGTERM ends the process on the spot and
    leaves them running. Servers replace this with their own graceful stop."""
    raise KeyboardInterrupt


def _run_demo(args: argparse.Namespace) -> int:
    if args.engine:
        from tools.demo import run_demo

        return run_demo()
    from tools.demo_cluster import DemoParams, run_cluster_demo

    return run_cluster_demo(DemoParams(args.run_dir, args.duration, wait=not args.no_wait))
