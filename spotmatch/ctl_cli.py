"""`spotmatch ctl`: the operator's tool: watch the cluster, add/halt symbols, move, pin, drain.

Endpoints come from the run directory of `spotmatch up` (its cluster.json), then the
environment (SPOTMATCH_ETCD, SPOTMATCH_ETCD_PREFIX, SPOTMATCH_PG_DSN), then the flags, each
overriding the one before. Exit status: 0 done, 1 the operation could not be done (one line on
stderr says why), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

CtlHandler = Callable[[Any, argparse.Namespace], Awaitable[Any]]

DESCRIPTION = """\
Operate a spotmatch cluster through etcd (placement), PostgreSQL (reference data) and the
shards themselves (halt/resume). Reads never affect trading. Placement changes are carried out
by the elected controller and the shards: a moving symbol's orders are buffered by the routers
for tens of milliseconds, never rejected."""

EPILOG = """\
endpoints: taken from RUN_DIR/cluster.json (written by `spotmatch up`), then the environment
(SPOTMATCH_ETCD, SPOTMATCH_ETCD_PREFIX, SPOTMATCH_PG_DSN), then these flags.
exit status: 0 done; 1 the operation could not be done (reason on stderr); 2 bad usage."""


def register(commands: Any) -> None:
    ctl = commands.add_parser(
        "ctl",
        help="operate the cluster: status, symbols, move, pin, drain, rebalance",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common_options(ctl, suppress=False)
    ctl.set_defaults(handler=run)
    sub = ctl.add_subparsers(dest="ctl_command", metavar="COMMAND", required=True)
    _cluster_commands(sub)
    _move_commands(sub)
    _drain_commands(sub)
    _symbols_commands(sub)


def _command(sub: Any, name: str, summary: str, text: str, handler: str) -> Any:
    """A leaf command: its help, the global flags, and the handler (module:function)."""
    parser = sub.add_parser(name, help=summary, description=text)
    _common_options(parser, suppress=True)
    parser.set_defaults(ctl_handler=_lazy(handler))
    return parser


def _lazy(target: str) -> CtlHandler:
    """Import the handler's module only when the command runs (keeps --help fast)."""
    module_name, function = target.split(":")

    async def call(session: Any, args: argparse.Namespace) -> Any:
        import importlib

        handler: CtlHandler = getattr(importlib.import_module(module_name), function)
        return await handler(session, args)

    return call


def _cluster_commands(sub: Any) -> None:
    _command(
        sub,
        "status",
        "shards, their health, and where every symbol lives",
        "Show the live shards (address, gRPC health, draining, symbol count), every symbol's"
        " assignment (owner, state, fencing epoch, move target, pin), the elected controller"
        " and the etcd revision read. Read-only: no effect on trading.",
        "spotmatch.ctl_commands:status",
    )
    rebalance = _command(
        sub,
        "rebalance",
        "move symbols to where placement wants them",
        "Compute the moves that bring every active symbol to its desired shard (its pin, or"
        " rendezvous hashing over live, non-draining shards). --dry-run only shows them;"
        " --apply starts them (each symbol is MOVING: routers buffer its orders briefly while"
        " the new owner loads its book; nothing is rejected). The controller also does this"
        " on its own after membership changes; this is for when it is told not to, or to see"
        " what it would do.",
        "spotmatch.ctl_commands:rebalance",
    )
    mode = rebalance.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    mode.add_argument("--apply", action="store_true", help="start the planned moves")


def _move_commands(sub: Any) -> None:
    move = _command(
        sub,
        "move",
        "move a symbol to another shard now (and pin it there)",
        "Planned move: the owner finishes and commits its in-flight batches and hands the"
        " symbol over; the target raises the fencing epoch in Postgres, loads the book and"
        " serves it. Routers buffer the symbol's orders meanwhile (tens of milliseconds, none"
        " rejected). The symbol is then pinned to the target so rebalancing does not undo the"
        " move; `spotmatch ctl unpin SYMBOL` hands it back to placement. The target must be"
        " live and not draining.",
        "spotmatch.ctl_commands:move",
    )
    move.add_argument("symbol", metavar="SYMBOL")
    move.add_argument("--to", required=True, metavar="SHARD", help="destination shard id")
    move.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for the move to finish and show the observed pause"
        " (default 0: return once started)",
    )
    pin = _command(
        sub,
        "pin",
        "keep a symbol on a given shard",
        "Pin SYMBOL to SHARD: placement always wants it there, so the controller moves it if"
        " it lives elsewhere (a planned move: orders are buffered briefly, not rejected).",
        "spotmatch.ctl_commands:pin",
    )
    pin.add_argument("symbol", metavar="SYMBOL")
    pin.add_argument("shard", metavar="SHARD")
    unpin = _command(
        sub,
        "unpin",
        "let placement decide where a symbol lives again",
        "Remove SYMBOL's pin: rendezvous hashing decides again, so the controller may move it"
        " (a planned move: orders are buffered briefly, not rejected).",
        "spotmatch.ctl_commands:unpin",
    )
    unpin.add_argument("symbol", metavar="SYMBOL")


def _drain_commands(sub: Any) -> None:
    drain = _command(
        sub,
        "drain",
        "empty a shard for maintenance",
        "Mark SHARD draining: it gets no new symbols and the controller moves its symbols to"
        " other shards one planned move at a time (orders buffered briefly, none rejected)."
        " Symbols pinned to it stay until unpinned. The mark survives restarts; stop the"
        " shard once `spotmatch ctl status` shows it empty.",
        "spotmatch.ctl_commands:drain",
    )
    drain.add_argument("shard", metavar="SHARD")
    undrain = _command(
        sub,
        "undrain",
        "let a drained shard take symbols again",
        "Clear SHARD's draining mark: it is eligible for placement again, and the controller"
        " may move symbols back to it (planned moves).",
        "spotmatch.ctl_commands:undrain",
    )
    undrain.add_argument("shard", metavar="SHARD")


def _symbols_commands(sub: Any) -> None:
    symbols = sub.add_parser(
        "symbols",
        help="add, list, halt and resume symbols",
        description="Reference data (PostgreSQL), placement (etcd) and trading status.",
    )
    actions = symbols.add_subparsers(dest="symbols_command", metavar="ACTION", required=True)
    _symbols_add(actions)
    _symbols_status(actions)
    _command(
        actions,
        "list",
        "reference data, status and placement of every symbol",
        "List every symbol: reference data and trading status from PostgreSQL, owner, state,"
        " epoch and pin from etcd. Read-only.",
        "spotmatch.ctl_symbols:list_all",
    )


def _symbols_add(actions: Any) -> None:
    add = _command(
        actions,
        "add",
        "create a symbol and have it placed on a shard",
        "Create SYMBOL's reference data in PostgreSQL (migrating the schema first) and add it"
        " to the cluster's catalog; the controller places it on a shard, which loads it and"
        " starts matching it (status TRADING). Prices and quantities are integers in the"
        " symbol's minor units: every price must be a multiple of --tick-size, every quantity"
        " a multiple of --lot-size and within [--min-qty, --max-qty].",
        "spotmatch.ctl_symbols:add",
    )
    add.add_argument("symbol", metavar="SYMBOL")
    add.add_argument("--tick-size", type=int, required=True, metavar="N", help="price step")
    add.add_argument("--lot-size", type=int, required=True, metavar="N", help="quantity step")
    add.add_argument("--min-qty", type=int, default=None, metavar="N", help="default: lot size")
    add.add_argument(
        "--max-qty",
        type=int,
        default=None,
        metavar="N",
        help="default: the largest multiple of the lot size in an int64",
    )


def _symbols_status(actions: Any) -> None:
    for name, verb, effect in (
        (
            "halt",
            "stop trading a symbol",
            "New orders and amends are rejected"
            " (SYMBOL_HALTED); cancels still work, resting orders stay.",
        ),
        ("resume", "resume trading a halted symbol", "Orders are accepted and matched again."),
    ):
        action = _command(
            actions,
            name,
            verb,
            f"{effect} Sent to the owning shard as a sequenced command: every later command"
            " (and every replay) sees it, and it is journaled with its batch.",
            f"spotmatch.ctl_symbols:{name}",
        )
        action.add_argument("symbol", metavar="SYMBOL")
        action.add_argument(
            "--reason",
            default="",
            metavar="TEXT",
            help="why; shown in the output (SetSymbolStatus has no field to journal it yet)",
        )
        action.add_argument(
            "--cluster-token-file",
            default=os.environ.get("SPOTMATCH_CLUSTER_TOKEN_FILE", ""),
            metavar="FILE",
            help="the cluster token, for shards that require it (env SPOTMATCH_CLUSTER_TOKEN_FILE)",
        )


def _common_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The global flags; subcommands accept them too (``ctl status --json``) without
    resetting what was given before the subcommand."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("connection and output")
    group.add_argument("--etcd", default=default(None), metavar="H:P,...", help="etcd endpoints")
    group.add_argument(
        "--etcd-prefix", default=default(None), metavar="P", help="key prefix of the cluster"
    )
    group.add_argument("--pg-dsn", default=default(None), metavar="DSN", help="PostgreSQL DSN")
    group.add_argument(
        "--run-dir",
        type=Path,
        default=default(Path(os.environ.get("SPOTMATCH_RUN_DIR", ".run/spotmatch"))),
        metavar="DIR",
        help="run directory of `spotmatch up` (default .run/spotmatch, env SPOTMATCH_RUN_DIR)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print machine-readable JSON instead of tables",
    )


def resolve_endpoints(args: argparse.Namespace) -> Any:
    """Run directory, then environment, then flags: each overrides the one before."""
    from cluster.registry import DEFAULT_PREFIX
    from spotmatch.ctl_commands import Endpoints
    from tools.cluster.state import read_state

    state = read_state(args.run_dir)
    etcd = state.etcd_endpoint if state else ""
    prefix = state.etcd_prefix if state else DEFAULT_PREFIX
    dsn = state.pg_dsn if state else ""
    env = os.environ
    etcd = args.etcd if args.etcd is not None else env.get("SPOTMATCH_ETCD", etcd)
    prefix = (
        args.etcd_prefix
        if args.etcd_prefix is not None
        else env.get("SPOTMATCH_ETCD_PREFIX", prefix)
    )
    dsn = args.pg_dsn if args.pg_dsn is not None else env.get("SPOTMATCH_PG_DSN", dsn)
    endpoints = tuple(e.strip() for e in etcd.split(",") if e.strip())
    return Endpoints(endpoints, prefix, dsn)


def run(args: argparse.Namespace) -> int:
    """The `spotmatch ctl` handler: run the command, print, map every failure to one line."""
    logging.basicConfig(level=os.environ.get("SPOTMATCH_LOG_LEVEL", "ERROR").upper())
    try:
        from spotmatch.ctl_output import render

        output = asyncio.run(_run(args))
    except Exception as exc:
        message = _describe(exc, args)
        if message is None:
            raise
        print(f"spotmatch ctl: {message}", file=sys.stderr)
        return 1
    print(render(output, args.json))
    if output.failure:
        print(f"spotmatch ctl: {output.failure}", file=sys.stderr)
        return 1
    return 0


async def _run(args: argparse.Namespace) -> Any:
    from spotmatch.ctl_commands import Session

    session = Session(resolve_endpoints(args))
    try:
        handler: CtlHandler = args.ctl_handler
        return await handler(session, args)
    finally:
        await session.close()


def _describe(exc: Exception, args: argparse.Namespace) -> str | None:
    """The one-line message for an operator error; None for a bug (let it raise)."""
    import psycopg

    from cluster.errors import ClusterError, InvalidRequest, RegistryUnavailable
    from persistence.errors import PersistenceError
    from spotmatch.ctl_output import CtlError, one_line
    from tools.cluster.errors import LauncherError

    if isinstance(exc, CtlError | InvalidRequest | LauncherError | PersistenceError):
        return one_line(str(exc))
    if isinstance(exc, RegistryUnavailable):
        where = ",".join(resolve_endpoints(args).etcd)
        return one_line(f"cannot reach etcd at {where}: {exc}")
    if isinstance(exc, ClusterError):
        return one_line(f"etcd: {exc}")
    if isinstance(exc, psycopg.OperationalError):
        return one_line(f"cannot reach PostgreSQL ({resolve_endpoints(args).pg_dsn}): {exc}")
    if isinstance(exc, psycopg.Error):
        return one_line(f"PostgreSQL: {exc}")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """`spotmatch ctl ARGV...` on its own (tests, and before `ctl` is registered in cli.py)."""
    parser = argparse.ArgumentParser(prog="spotmatch")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["ctl", *(sys.argv[1:] if argv is None else argv)])
    result: int = args.handler(args)
    return result
