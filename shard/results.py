"""From protobuf commands to pipeline outcomes and back: shared by every RPC shape.

Unary calls, SubmitBatch, the Trade stream and the router's Execute stream all carry
OrderCommands; one malformed command becomes one CommandError and never fails the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from api.auth import UNRESTRICTED, Principal, denied_commands, permission_denied
from api.status import command_error, command_symbol, malformed_command_error
from api.validation import validate_command
from matching.v1 import orders_pb2, shard_pb2, types_pb2
from shard.admission import Outcome
from shard.edge import MassCancelAllSymbols, command_from_pb, mass_cancel_symbols, write_report
from shard.engine import Command, MassCancel, Report
from shard.errors import REASON_OVERLOADED, CommandFailure, Overloaded
from shard.idempotency import Replay
from shard.ownership import Ownership
from shard.pipeline import Pipeline

PbCommand = orders_pb2.OrderCommand | shard_pb2.ShardCommand
Results = RepeatedCompositeFieldContainer[orders_pb2.CommandResult]
# Per command, what it became: its refusal, the index of its one domain command, or the
# (first, count) range of a mass cancel's domain commands (one per symbol).
_Planned = orders_pb2.CommandError | int | tuple[int, int]
# Per call kind ("unary", "batch", "trade", "execute"), what takes the seconds a call's
# commands spent from planning to answered (shard/metrics.py); empty = not timed.
RequestTimers = Mapping[str, Callable[[float], None]]


async def execute_commands(
    pipeline: Pipeline,
    commands: Sequence[PbCommand],
    out: Results,
    nbytes: int = 0,
    principal: Principal = UNRESTRICTED,
    timed: Callable[[float], None] | None = None,
) -> None:
    """Authorize, validate, convert, run through the pipeline, and append one CommandResult
    per command to ``out`` (the results field of the response itself: nothing is copied
    afterwards). Commands for accounts ``principal`` may not trade get PERMISSION_DENIED.
    ``timed`` is given the seconds from the start to the last answer (after commit)."""
    started = time.perf_counter()
    domain: list[Command] = []
    deadlines: list[int] = []
    system: list[int] = []
    plan = _plan(commands, domain, deadlines, system, pipeline.ownership, principal)
    outcomes = await _submit(pipeline, domain, nbytes, deadlines if any(deadlines) else None,
                             system)  # fmt: skip
    now = time.time_ns()
    add = out.add
    for pb, planned in zip(commands, plan, strict=True):
        result = add()
        result.correlation_id = pb.correlation_id
        if isinstance(planned, int):
            _answer(result, domain[planned], outcomes[planned], now)
        elif isinstance(planned, tuple):
            first, count = planned
            _answer_mass(result, domain, outcomes, range(first, first + count), now)
        else:
            result.error.CopyFrom(planned)
    if timed is not None:
        timed(time.perf_counter() - started)


def _plan(
    commands: Sequence[PbCommand],
    domain: list[Command],
    deadlines: list[int],
    system: list[int],
    ownership: Ownership,
    principal: Principal,
) -> list[_Planned]:
    """Refuse or convert each command, appending the domain commands to ``domain``, each
    one's deadline (ns since the epoch, 0 = none) to ``deadlines``, and the indexes of
    cancels-on-disconnect (MassCancel.on_disconnect) to ``system``."""
    plan: list[_Planned] = []
    denied = set(denied_commands(principal, commands))
    for i, pb in enumerate(commands):
        if denied and i in denied:
            plan.append(permission_denied(pb))
            continue
        if validate_command(pb):  # paths with the command's index only for a bad command
            violations = validate_command(pb, f"commands[{i}].")
            plan.append(malformed_command_error(violations, command_symbol(pb)))
            continue
        cmd = command_from_pb(pb)
        if isinstance(cmd, MassCancelAllSymbols):
            # Every owned symbol: one away now (reloading, moving) answers a retryable error,
            # where leaving it out would look like a cancel that covered it.
            expanded = mass_cancel_symbols(cmd, ownership.owned())
            plan.append((len(domain), len(expanded)))
            if pb.mass_cancel.on_disconnect:
                system.extend(range(len(domain), len(domain) + len(expanded)))
            domain.extend(expanded)
            deadlines.extend([pb.deadline_unix_nanos] * len(expanded))
        else:
            plan.append((len(domain), 1) if type(cmd) is MassCancel else len(domain))
            if type(cmd) is MassCancel and pb.mass_cancel.on_disconnect:
                system.append(len(domain))
            domain.append(cmd)
            deadlines.append(pb.deadline_unix_nanos)
    return plan


async def _submit(
    pipeline: Pipeline,
    domain: list[Command],
    nbytes: int,
    deadlines: list[int] | None,
    system: list[int],
) -> list[Outcome]:
    if not domain:
        return []
    try:
        return await pipeline.submit(domain, nbytes, deadlines, system=frozenset(system))
    except Overloaded as exc:
        failure = CommandFailure(REASON_OVERLOADED, str(exc))
        return [failure] * len(domain)


def _answer(result: orders_pb2.CommandResult, cmd: Command, outcome: Outcome, now: int) -> None:
    if type(outcome) is Report:
        write_report(result.report, outcome, now)
    elif type(outcome) is Replay:
        write_report(result.report, outcome.report, now, replayed=True)
    else:
        assert isinstance(outcome, CommandFailure)
        result.error.CopyFrom(failure_to_pb(outcome, cmd.symbol))


def _answer_mass(
    result: orders_pb2.CommandResult,
    domain: list[Command],
    outcomes: list[Outcome],
    indexes: range,
    now: int,
) -> None:
    """One report per symbol where the mass cancel ran."""
    mass = result.mass_cancel
    mass.SetInParent()  # a mass cancel over no owned symbol is still an (empty) result
    for i in indexes:
        outcome = outcomes[i]
        if isinstance(outcome, CommandFailure):
            mass.errors.append(failure_to_pb(outcome, domain[i].symbol))
        else:
            report = outcome.report if isinstance(outcome, Replay) else outcome
            write_report(mass.reports.add(), report, now)


def failure_to_pb(failure: CommandFailure, symbol: str) -> orders_pb2.CommandError:
    hint = types_pb2.OwnerHint(shard_id=failure.owner_hint) if failure.owner_hint else None
    return command_error(failure.reason, failure.message, owner_hint=hint, symbol=symbol)  # type: ignore[arg-type]


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
