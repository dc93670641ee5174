"""`spotmatch controller`: run a controller candidate on its own (shards also run one)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
from typing import Any

from telemetry.logs import add_arguments as log_arguments
from telemetry.logs import setup_logging


def register(commands: Any) -> None:
    from cluster.decisions import Policy
    from cluster.registry import DEFAULT_LEASE_TTL, DEFAULT_PREFIX

    parser = commands.add_parser(
        "controller",
        help="run a controller candidate (one elected instance moves and fails over symbols)",
        description="Campaign for the cluster's controller role in etcd; while elected, place "
        "new symbols, fail over the symbols of shards whose lease expired, and carry out pins, "
        "drains, operator moves and rebalancing, one compare-and-swap per change. Shards run a "
        "candidate too unless started with --no-controller; any number may run.",
    )
    parser.add_argument(
        "--etcd",
        default=os.environ.get("SPOTMATCH_ETCD", ""),
        help="etcd endpoints host:port,... (env SPOTMATCH_ETCD)",
    )
    parser.add_argument(
        "--etcd-prefix",
        default=os.environ.get("SPOTMATCH_ETCD_PREFIX", DEFAULT_PREFIX),
        help=f"key prefix of the cluster (default {DEFAULT_PREFIX})",
    )
    parser.add_argument(
        "--id",
        default=f"controller-{socket.gethostname()}-{os.getpid()}",
        help="this candidate's id (default controller-HOST-PID)",
    )
    parser.add_argument(
        "--lease-ttl",
        type=int,
        default=DEFAULT_LEASE_TTL,
        help=f"election lease in seconds (default {DEFAULT_LEASE_TTL})",
    )
    parser.add_argument(
        "--no-auto-rebalance",
        action="store_true",
        help="move symbols only for pins, drains and failover, not when shards join",
    )
    parser.add_argument(
        "--join-hold",
        type=float,
        default=Policy.join_hold,
        help="seconds a shard that (re)joined must stay live before pins, drains and "
        "rebalancing move symbols to it; failover does not wait "
        f"(default {Policy.join_hold:g})",
    )
    parser.add_argument(
        "--metrics-listen",
        default=os.environ.get("SPOTMATCH_CONTROLLER_METRICS_LISTEN", ""),
        metavar="HOST:PORT",
        help="serve Prometheus metrics (decisions by reason) on HOST:PORT/metrics"
        " (env SPOTMATCH_CONTROLLER_METRICS_LISTEN; default: none)",
    )
    log_arguments(parser)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    if not args.etcd:
        raise SystemExit("spotmatch controller: --etcd (or SPOTMATCH_ETCD) is required")
    setup_logging(args.log_level, args.log_format, "controller")
    asyncio.run(_serve(args))
    return 0


async def _serve(args: argparse.Namespace) -> None:
    from cluster.controller import Controller, ControllerConfig
    from cluster.decisions import Policy
    from cluster.etcd import EtcdRegistry
    from cluster.table import ClusterTable
    from telemetry.metrics import MetricsEndpoint

    endpoint = MetricsEndpoint(args.metrics_listen) if args.metrics_listen else None
    registry = EtcdRegistry(args.etcd.split(","), prefix=args.etcd_prefix)
    await registry.connect()
    table = ClusterTable(registry, name=args.id)
    await table.start(timeout=30.0)
    config = ControllerConfig(
        args.id,
        lease_ttl=max(2, args.lease_ttl),
        policy=Policy(auto_rebalance=not args.no_auto_rebalance, join_hold=args.join_hold),
    )
    task = asyncio.create_task(Controller(registry, table, config).run())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await table.stop()
    await registry.close()
    if endpoint is not None:
        endpoint.close()
