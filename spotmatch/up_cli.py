"""`spotmatch up` / `spotmatch down`: a whole local cluster on loopback, and stopping it."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

DEFAULT_SYMBOLS = "BTC-USD,ETH-USD,SOL-USD"


def register(commands: Any) -> None:
    _up_parser(commands)
    _down_parser(commands)


def _up_parser(commands: Any) -> None:
    up = commands.add_parser(
        "up",
        help="start a local cluster: etcd, PostgreSQL, Redis Cluster, shards and routers",
        description="Start a whole spotmatch cluster on 127.0.0.1 under the run directory:"
        " etcd, PostgreSQL (one database, migrated once), a 3-node Redis Cluster, the shards"
        " (cluster mode: they register in etcd and elect a controller among themselves) and"
        " the routers, each on a free port. Waits until every health check is SERVING and"
        " every symbol is placed, writes RUN_DIR/cluster.json and RUN_DIR/cluster.env, prints"
        " the endpoints, and returns: the processes keep running until `spotmatch down`."
        " Each `up` starts from empty data (the previous run's data is wiped).",
    )
    _run_dir(up)
    up.add_argument("--shards", type=int, default=3, help="number of shards (default 3)")
    up.add_argument("--routers", type=int, default=2, help="number of routers (default 2)")
    up.add_argument(
        "--symbols",
        default=DEFAULT_SYMBOLS,
        help="comma-separated symbols to create (tick 1, lot 1) and place; '' for none"
        f" (default {DEFAULT_SYMBOLS})",
    )
    up.add_argument(
        "--foreground",
        action="store_true",
        help="stay in the foreground; Ctrl-C (or SIGTERM) stops the whole cluster",
    )
    up.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for everything to start"
    )
    up.set_defaults(handler=_run_up)


def _down_parser(commands: Any) -> None:
    down = commands.add_parser(
        "down",
        help="stop the local cluster started by `spotmatch up`",
        description="Stop exactly the processes `spotmatch up` recorded in"
        " RUN_DIR/cluster.json (each pid is checked to still be the process that was started):"
        " routers first, then shards (SIGTERM: they commit what is in flight and leave the"
        " cluster; SIGKILL after a grace period), then Redis, etcd and PostgreSQL. Data and"
        " logs stay in the run directory until the next `up`.",
    )
    _run_dir(down)
    down.set_defaults(handler=_run_down)


def _run_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=Path(os.environ.get("SPOTMATCH_RUN_DIR", ".run/spotmatch")),
        help="where data, logs and the state file live (default .run/spotmatch,"
        " env SPOTMATCH_RUN_DIR)",
    )


def _run_up(args: argparse.Namespace) -> int:
    from tools.cluster import LauncherError, LocalCluster, refuse_if_running

    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    try:
        refuse_if_running(args.run_dir)
        cluster = LocalCluster(
            args.run_dir, shards=args.shards, routers=args.routers, symbols=symbols
        )
        print(f"starting a local cluster in {cluster.run_dir} ...", flush=True)
        cluster.start(args.timeout)
    except LauncherError as exc:
        print(f"spotmatch up: {exc}", file=sys.stderr)
        return 1
    print(summary(cluster, foreground=args.foreground), flush=True)
    if not args.foreground:
        cluster.detach()
        return 0
    _wait_for_stop(cluster)
    print("stopping ...", flush=True)
    cluster.stop()
    print("stopped", flush=True)
    return 0


def summary(cluster: Any, *, foreground: bool) -> str:
    run_dir = cluster.run_dir
    nodes = [cluster.shard(i) for i in range(len(cluster.shard_addresses))]
    shards = ", ".join(f"{node.name} {node.address}" for node in nodes)
    nodes += [cluster.router(i) for i in range(len(cluster.router_addresses))]
    metrics = ", ".join(f"{node.name} http://{node.metrics}/metrics" for node in nodes)
    lines = [
        "spotmatch cluster is up",
        f"  routers   {', '.join(cluster.router_addresses) or '(none)'}",
        f"  shards    {shards}",
        f"  etcd      {cluster.etcd_endpoint} (prefix {cluster.etcd_prefix})",
        f"  postgres  {cluster.pg_dsn}",
        f"  redis     {', '.join(cluster.redis_nodes)}",
        f"  symbols   {', '.join(cluster.symbols) or '(none)'}",
        f"  metrics   {metrics}",
        f"  auth      shards serve only the routers' cluster token ({cluster.cluster_token_file});"
        " routers serve anyone (--credentials: see `spotmatch auth --help`)",
        f"logs:   {run_dir}/logs/ (routers, shards), {run_dir}/etcd/etcd.log,",
        f"        {run_dir}/postgres/postgres.log, {run_dir}/redis/node-*/redis.log",
        f"env:    source {run_dir}/cluster.env",
        "status: spotmatch ctl status" + _dir_flag(run_dir),
        "stop:   Ctrl-C" if foreground else "stop:   spotmatch down" + _dir_flag(run_dir),
    ]
    return "\n".join(lines)


def _dir_flag(run_dir: Path) -> str:
    default = Path(".run/spotmatch").absolute()
    return "" if run_dir == default else f" --run-dir {run_dir}"


def _wait_for_stop(cluster: Any) -> None:
    """Until SIGINT/SIGTERM; say so once if a node dies meanwhile."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    reported: set[str] = set()
    while not stop.wait(1.0):
        nodes = [cluster.shard(i) for i in range(len(cluster.shard_addresses))]
        nodes += [cluster.router(i) for i in range(len(cluster.router_addresses))]
        for node in nodes:
            if not node.is_running() and node.name not in reported:
                reported.add(node.name)
                print(f"warning: {node.name} exited; see {node.log_path}", file=sys.stderr)


def _run_down(args: argparse.Namespace) -> int:
    from tools.cluster import LauncherError, stop_cluster

    try:
        notes = stop_cluster(args.run_dir)
    except LauncherError as exc:
        print(f"spotmatch down: {exc}", file=sys.stderr)
        return 1
    if notes is None:
        print(f"nothing is running (no {args.run_dir / 'cluster.json'})")
        return 0
    print("\n".join(notes))
    print("cluster stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`spotmatch up|down ...` on its own (tests, and before it is registered in cli.py)."""
    parser = argparse.ArgumentParser(prog="spotmatch")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    result: int = args.handler(args)
    return result
