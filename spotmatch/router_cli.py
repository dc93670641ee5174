"""`spotmatch router`: run a router (the public OrderGatewayService in front of the shards)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from telemetry.logs import add_arguments as log_arguments
from telemetry.logs import setup_logging


def register(commands: Any) -> None:
    router = commands.add_parser(
        "router",
        help="run a router: the public gRPC order gateway in front of the shards",
        description="Run a router: follow the symbol assignment table in etcd, keep one "
        "Execute stream per shard, and serve OrderGatewayService, coalescing every "
        "caller's commands into per-shard batches. Stateless: run as many as needed behind "
        "a load balancer. Trading continues on the last known table if etcd goes down. "
        "SIGTERM/SIGINT shut down gracefully.",
    )
    from router.config import add_arguments

    add_arguments(router)
    log_arguments(router)
    router.set_defaults(handler=_run_router)


def _run_router(args: argparse.Namespace) -> int:
    from router.config import from_args
    from router.server import run

    config = from_args(args)
    setup_logging(args.log_level, args.log_format, config.router_id)
    import uvloop

    from cluster.errors import ClusterError

    uvloop.install()
    try:
        asyncio.run(run(config))
    except ClusterError as exc:  # etcd unreachable at start: nothing to route by
        print(f"spotmatch router: cannot read the cluster table: {exc}", file=sys.stderr)
        return 1
    return 0
