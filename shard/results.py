"""From protobuf commands to pipeline outcomes and back: shared by every RPC shape.

Unary calls, SubmitBatch, the Trade stream and the router's Execute stream all carry
OrderCommands; one malformed command becomes one CommandError and never fails the others.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from api.status import command_error, malformed_command_error
from api.validation import validate_command
from matching.v1 import orders_pb2, shard_pb2, types_pb2
from shard.admission import Outcome
from shard.edge import MassCancelAllSymbols, command_from_pb, command_side, mass_cancel_symbols
from shard.edge import report_to_pb as _report_to_pb
from shard.engine import Command, MassCancel, Report
from shard.errors import REASON_OVERLOADED, CommandFailure, Overloaded
from shard.idempotency import Replay
from shard.ownership import Ownership
from shard.pipeline import Pipeline

PbCommand = orders_pb2.OrderCommand | shard_pb2.ShardCommand
_Slot = tuple[int, int, bool]  # first index in the domain list, how many, is a mass cancel


async def execute_commands(
    pipeline: Pipeline,
    commands: Sequence[PbCommand],
    nbytes: int = 0,
) -> list[orders_pb2.CommandResult]:
    """Validate, convert, run through the pipeline, and answer one CommandResult each."""
    results: list[orders_pb2.CommandResult | None] = [None] * len(commands)
    domain: list[Command] = []
    slots: list[_Slot | None] = []
    arrived = time.time_ns()
    for i, pb in enumerate(commands):
        error = _refusal(pb, i, arrived)
        if error is not None:
            results[i] = orders_pb2.CommandResult(correlation_id=pb.correlation_id, error=error)
            slots.append(None)
            continue
        expanded = _expand(command_from_pb(pb), pipeline.ownership)
        slots.append((len(domain), len(expanded), pb.WhichOneof("command") == "mass_cancel"))
        domain.extend(expanded)
    outcomes = await _submit(pipeline, domain, nbytes)
    now = time.time_ns()
    for i, (pb, slot) in enumerate(zip(commands, slots, strict=True)):
        if slot is not None:
            start, count, is_mass = slot
            results[i] = _result(
                pb, domain[start : start + count], outcomes[start : start + count], is_mass, now
            )
    return [r for r in results if r is not None]


def _refusal(pb: PbCommand, i: int, now: int) -> orders_pb2.CommandError | None:
    """A command that must not run: malformed, or (router commands) already past its
    caller's deadline when it arrived, so nobody is waiting for its outcome."""
    violations = validate_command(pb, f"commands[{i}].")
    if violations:
        return malformed_command_error(violations, _symbol_of(pb))
    if type(pb) is shard_pb2.ShardCommand and 0 < pb.deadline_unix_nanos < now:
        return command_error(
            types_pb2.REJECT_CODE_DEADLINE_EXCEEDED,
            "the caller's deadline passed before the shard received the command; not executed",
            symbol=_symbol_of(pb),
        )
    return None


def _expand(cmd: Command | MassCancelAllSymbols, ownership: Ownership) -> list[Command]:
    if isinstance(cmd, MassCancelAllSymbols):
        return list(mass_cancel_symbols(cmd, ownership.serving()))
    return [cmd]


async def _submit(pipeline: Pipeline, domain: list[Command], nbytes: int) -> list[Outcome]:
    if not domain:
        return []
    try:
        return await pipeline.submit(domain, nbytes)
    except Overloaded as exc:
        failure = CommandFailure(REASON_OVERLOADED, str(exc))
        return [failure] * len(domain)


def _result(
    pb: PbCommand, cmds: list[Command], outcomes: list[Outcome], is_mass: bool, now: int
) -> orders_pb2.CommandResult:
    cid = pb.correlation_id
    if is_mass:
        mass = orders_pb2.MassCancelResult()
        for cmd, outcome in zip(cmds, outcomes, strict=True):
            if isinstance(outcome, CommandFailure):
                mass.errors.append(failure_to_pb(outcome, cmd.symbol))
            else:
                mass.reports.append(report_to_pb(cmd, outcome, now))
        return orders_pb2.CommandResult(correlation_id=cid, mass_cancel=mass)
    outcome = outcomes[0]
    if isinstance(outcome, CommandFailure):
        error = failure_to_pb(outcome, cmds[0].symbol)
        return orders_pb2.CommandResult(correlation_id=cid, error=error)
    return orders_pb2.CommandResult(correlation_id=cid, report=report_to_pb(cmds[0], outcome, now))


def report_to_pb(cmd: Command, outcome: Report | Replay, now: int) -> orders_pb2.ExecutionReport:
    """The answer to ``cmd``; a Replay is the original result of an idempotent retry."""
    side = 0 if isinstance(cmd, MassCancel) and cmd.side is None else command_side(cmd)
    if isinstance(outcome, Replay):
        return _report_to_pb(outcome.report, side=side, transact_time_unix_nanos=now, replayed=True)
    return _report_to_pb(outcome, side=side, transact_time_unix_nanos=now)


def failure_to_pb(failure: CommandFailure, symbol: str) -> orders_pb2.CommandError:
    hint = types_pb2.OwnerHint(shard_id=failure.owner_hint) if failure.owner_hint else None
    return command_error(failure.reason, failure.message, owner_hint=hint, symbol=symbol)  # type: ignore[arg-type]


def _symbol_of(pb: PbCommand) -> str:
    kind = pb.WhichOneof("command")
    return str(getattr(getattr(pb, kind), "symbol", "")) if kind else ""


def order_to_pb(row: tuple[Any, ...]) -> orders_pb2.Order:
    """An order row (persistence.placements.ORDER_QUERY_COLUMNS order) as the wire's Order."""
    (symbol, order_id, cloid, account, side, order_type, tif, post_only, stp, price, quantity,
     cum, leaves, status, priority, created_seq, updated_seq) = row  # fmt: skip
    return orders_pb2.Order(
        symbol=symbol, order_id=order_id, client_order_id=cloid, account=account, side=side,
        order_type=order_type, time_in_force=tif, post_only=post_only, stp_mode=stp,
        price=price, quantity=quantity, cum_qty=cum, leaves_qty=leaves, status=status,
        priority=priority, created_seq=created_seq, updated_seq=updated_seq,
    )  # fmt: skip
