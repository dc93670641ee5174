"""`spotmatch shard` and `spotmatch db`: run a shard node; manage the database schema."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from telemetry.logs import add_arguments as log_arguments
from telemetry.logs import setup_logging


def register(commands: Any) -> None:
    shard = commands.add_parser(
        "shard",
        help="run a shard node (matching + durable Postgres writer) serving gRPC",
        description="Run a shard: migrate the schema, claim each owned symbol in Postgres "
        "(raising its epoch fences any previous owner), load its book, then serve "
        "ShardService and OrderGatewayService. Every report is released only after its "
        "batch commits. SIGTERM/SIGINT shut down gracefully.",
    )
    from shard.config import add_arguments

    add_arguments(shard)
    log_arguments(shard)
    shard.set_defaults(handler=_run_shard)

    db = commands.add_parser(
        "db", help="database schema tools", description="Database schema tools."
    )
    actions = db.add_subparsers(dest="action", metavar="ACTION", required=True)
    migrate = actions.add_parser(
        "migrate",
        help="apply pending schema migrations",
        description="Apply pending schema migrations, in order.",
    )
    migrate.add_argument(
        "--pg-dsn",
        default=os.environ.get("SPOTMATCH_PG_DSN", ""),
        help="PostgreSQL connection string (env SPOTMATCH_PG_DSN)",
    )
    migrate.set_defaults(handler=_run_migrate)


def _run_shard(args: argparse.Namespace) -> int:
    from shard.config import from_args
    from shard.server import run

    config = from_args(args)
    setup_logging(args.log_level, args.log_format, config.shard_id)
    _event_loop_policy()
    asyncio.run(run(config))
    return 0


def _run_migrate(args: argparse.Namespace) -> int:
    from persistence.migrate import migrate

    if not args.pg_dsn:
        raise SystemExit("spotmatch db migrate: --pg-dsn (or SPOTMATCH_PG_DSN) is required")
    setup_logging("INFO")
    applied = asyncio.run(migrate(args.pg_dsn))
    print(f"applied migrations: {applied}" if applied else "schema is up to date")
    return 0


def _event_loop_policy() -> None:
    import uvloop

    uvloop.install()
