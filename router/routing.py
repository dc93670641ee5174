"""Commands to shards: validate, encode once, route by the assignment table, retry once.

``Dispatcher.execute`` serves every RPC shape (unary, SubmitBatch, Trade): one result per
command, in the caller's order and with the caller's correlation ids. Routing is done
synchronously before the first await, so the commands of one symbol keep their order
across a stream's requests. An unknown symbol (no assignment, not in the catalog) is
answered as the shard answers a symbol it does not know: CommandError UNKNOWN_SYMBOL
(NOT_FOUND); for a mass cancel that error sits in MassCancelResult.errors, as on a shard.

A shard answer saying it did nothing because of ownership (NOT_OWNER, SYMBOL_MOVING,
SYMBOL_RECOVERING, SHUTTING_DOWN), or a command the link could not send, is retried once:
after NOT_OWNER the table is re-read; if the table still names the same reachable owner the
router waits (bounded by the buffer time and the deadline) for the assignment to change;
then the command is routed again (buffered if the symbol has no reachable owner yet). If
that fails too, the caller gets the second answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from api.status import command_error, malformed_command_error
from api.validation import validate_command
from cluster.model import Assignment, ClusterView
from matching.v1 import orders_pb2, types_pb2
from router.buffers import UNKNOWN, WAIT, Route, SymbolBuffers, send, unknown_symbol_error
from router.config import RouterConfig
from router.handovers import Handovers
from router.link import Part, ShardLink
from router.links import LinkSet

log = logging.getLogger(__name__)

CommandResult = orders_pb2.CommandResult
_RC = types_pb2.RejectCode
RETRY_REASONS = frozenset(
    {
        _RC.REJECT_CODE_NOT_OWNER,
        _RC.REJECT_CODE_SYMBOL_MOVING,
        _RC.REJECT_CODE_SYMBOL_RECOVERING,
        _RC.REJECT_CODE_SHUTTING_DOWN,
    }
)
RECOVERY_PAUSE = 0.1  # a recovering symbol reloads in place: its assignment does not change
_MALFORMED = _RC.REJECT_CODE_MALFORMED_COMMAND


class Table(Protocol):
    """What the router needs of cluster.table.ClusterTable."""

    listeners: list[Callable[[ClusterView], None]]

    def view(self) -> ClusterView: ...

    def assignment(self, symbol: str) -> Assignment | None: ...

    async def wait_for(
        self, predicate: Callable[[ClusterView], bool], timeout: float
    ) -> ClusterView: ...

    async def refresh(self) -> ClusterView: ...


class _Request:
    """One caller's commands on their way: per command its symbol, bytes and result."""

    __slots__ = ("bodies", "commands", "deadline", "deadlines", "finished", "held", "kinds",
                 "max_wait", "parts", "results", "seq", "symbols")  # fmt: skip

    def __init__(
        self,
        commands: Sequence[orders_pb2.OrderCommand],
        deadline: int,
        seq: int,
        max_wait: float,
    ) -> None:
        n = len(commands)
        self.seq = seq
        self.max_wait = max_wait  # seconds its commands may wait in a buffer
        self.commands = commands
        self.deadline = deadline
        self.kinds: list[str | None] = [None] * n
        self.symbols: list[str] = [""] * n
        self.bodies: list[bytes] = [b""] * n
        self.deadlines: list[int] = [0] * n
        self.results: list[CommandResult | None] = [None] * n
        self.parts: list[Part] = []
        self.held: list[str] = []  # symbols refused by a shard, held until the retry is placed
        self.finished = False  # execute() has returned or raised: no retry will be placed


class Dispatcher:
    def __init__(self, table: Table, links: LinkSet, config: RouterConfig) -> None:
        self._table = table
        self._links = links
        self._config = config
        self.buffers = SymbolBuffers(
            config.buffer_max_commands, config.buffer_max_seconds, self.route
        )
        self.handovers = Handovers(config.handover_wait, links.find, self.buffers.drain)
        self.retried = 0  # commands retried after an ownership answer (a metric; tests)
        self._arrivals = itertools.count(1)

    def route(self, symbol: str) -> Route:
        """A ready link of the symbol's ACTIVE owner, else WAIT (buffer) or UNKNOWN. A
        symbol whose previous owner may still send reports of it waits (router/handovers)."""
        assignment = self._table.assignment(symbol)
        if assignment is None:
            return WAIT if symbol in self._table.view().symbols else UNKNOWN
        if assignment.routable() and not self.handovers.waiting(symbol):
            link = self._links.get(assignment.shard_id)
            if link is not None and link.ready:
                return link
        return WAIT

    def in_transit(self) -> list[str]:
        """Symbols whose commands wait in the buffers now (moving, loading, owner down):
        a mass cancel sent to every shard reaches no owner of theirs."""
        return sorted(s for s in self._table.view().assignments if self.route(s) == WAIT)

    async def execute(
        self,
        commands: Sequence[orders_pb2.OrderCommand],
        deadline: int,
        *,
        max_wait: float = 0.0,
        own: bool = False,
    ) -> list[CommandResult]:
        """One result per command, in order; ``deadline`` in ns since the epoch.
        ``max_wait``: how long they may wait for a symbol's owner (0: buffer_max_seconds).
        ``own``: the router's own commands (cancel-on-disconnect), not a client's."""
        max_wait = max_wait or self._config.buffer_max_seconds
        request = _Request(commands, deadline, next(self._arrivals), max_wait)
        routed, fan_outs = self._prepare(request, own)
        parts = self._dispatch(request, routed)
        spread = [(i, self._fan_out(request, i)) for i in fan_outs]
        try:
            await self._settle(request, [*parts, *(p for _, ps in spread for p, _ in ps)])
            retry = self._collect(request, parts)
            if retry:
                self.retried += len(retry)
                await self._before_retry(request, retry)
                again = self._dispatch(request, [i for i, _, _ in retry])
                self._release_held(request)  # the retries are in place: later ones may go
                await self._settle(request, again)
                self._collect(request, again)
            for i, fan_parts in spread:
                request.results[i] = _merge_mass_cancels(fan_parts)
        finally:
            request.finished = True
            self._release_held(request)
            for part in request.parts:
                if not part.future.done():
                    part.future.cancel()  # the link skips what it has not sent yet
        return _finish(request)

    # --- steps --------------------------------------------------------------------------

    def _prepare(self, request: _Request, own: bool) -> tuple[list[int], list[int]]:
        """Validate and encode; which commands go to one symbol, which to every shard."""
        routed: list[int] = []
        fan_outs: list[int] = []
        deadline = request.deadline
        for i, command in enumerate(request.commands):
            violations = validate_command(command, routed=own)
            kind = command.WhichOneof("command")
            symbol = str(getattr(command, kind).symbol) if kind else ""
            if violations:  # again with the field paths the shard reports (rare: no cost)
                violations = validate_command(command, f"commands[{i}].", routed=own)
                error = malformed_command_error(violations, symbol)
                request.results[i] = CommandResult(error=error)
                continue
            own_deadline = command.deadline_unix_nanos
            request.kinds[i] = kind
            request.symbols[i] = symbol
            # The shard parses these bytes as a ShardCommand, whose extra (admin) fields a
            # caller could otherwise smuggle in as fields unknown to OrderCommand.
            command.DiscardUnknownFields()
            request.bodies[i] = command.SerializeToString()
            request.deadlines[i] = own_deadline if 0 < own_deadline < deadline else deadline
            (routed if symbol else fan_outs).append(i)
        return routed, fan_outs

    def _dispatch(self, request: _Request, indices: list[int]) -> list[Part]:
        """Send or buffer the commands. A symbol sent to a shard holds its buffer (if one
        forms: a move) until the shard has answered and, if it refused, until the retry is
        in place (``_answered``, ``_release_held``)."""
        groups: dict[ShardLink | str, tuple[list[int], list[bytes], list[int]]] = {}
        routes: dict[str, Route] = {}
        symbols, bodies, deadlines = request.symbols, request.bodies, request.deadlines
        for i in indices:
            symbol = symbols[i]
            route = routes.get(symbol)
            if route is None:
                route = self.route(symbol)
                if self.buffers.must_wait(symbol, route):
                    route = WAIT
                routes[symbol] = route
            if route == UNKNOWN:
                request.results[i] = CommandResult(error=unknown_symbol_error(symbol))
                continue
            key = route if isinstance(route, ShardLink) else symbol
            group = groups.get(key)
            if group is None:
                group = groups[key] = ([], [], [])
            group[0].append(i)
            group[1].append(bodies[i])
            group[2].append(deadlines[i])
        parts = []
        for key, (idx, group_bodies, group_deadlines) in groups.items():
            part = Part(idx, group_bodies, group_deadlines, request.seq)
            part.max_wait = request.max_wait
            parts.append(part)
            if isinstance(key, ShardLink):
                self._sending(request, part, {symbols[i] for i in idx}, key)
                send(part, key, symbols[idx[0]])
            else:
                part.on_send = functools.partial(self._sending, request, part, {key})
                self.buffers.add(key, part)
        request.parts.extend(parts)
        return parts

    def _sending(self, request: _Request, part: Part, held: set[str], link: ShardLink) -> None:
        """``part`` goes to ``link`` (now, or drained from a buffer): its symbols stay
        unsettled until it is answered."""
        self.buffers.unsettled(held, link)
        part.future.add_done_callback(functools.partial(self._answered, request, part, held))

    def _answered(self, request: _Request, part: Part, held: set[str], _: object) -> None:
        """A part's shard answered (or the caller gave up): release its symbols, but keep
        those it refused held until their retry is in place (none will be once the request
        has finished: a caller cancelled as the answer came)."""
        refused = set()
        if not part.final and not part.future.cancelled() and not request.finished:
            symbols = request.symbols
            refused = {symbols[i] for j, i in enumerate(part.indices)
                       if _did_nothing(part.results[j])}  # fmt: skip
        self.buffers.settled(held - refused)
        request.held.extend(refused)

    def _release_held(self, request: _Request) -> None:
        self.buffers.settled(request.held)
        request.held.clear()

    def _fan_out(self, request: _Request, i: int) -> list[tuple[Part, list[str]]]:
        """A mass cancel without a symbol goes to every shard (each covers its symbols).
        Each part comes with the symbols the table gave its shard when it was sent: if the
        shard never answers, those are where the mass cancel may not have run (the table
        may have moved them on by then: a failover)."""
        assignments = self._table.view().assignments
        parts = []
        for link in self._links.all():
            part = Part([i], [request.bodies[i]], [request.deadlines[i]])
            covered = sorted(s for s, a in assignments.items() if a.shard_id == link.shard_id)
            parts.append((part, covered))
            if link.ready:
                send(part, link, "")
            else:
                part.fail(_unreachable(link), final=True)
        request.parts.extend(part for part, _ in parts)
        return parts

    async def _settle(self, request: _Request, parts: list[Part]) -> None:
        """Wait for the parts' answers, at most until the deadline plus answer_grace."""
        waiting = [p.future for p in parts if not p.future.done()]
        if waiting:
            timeout = max(0.0, (request.deadline - time.time_ns()) / 1e9)
            await asyncio.wait(waiting, timeout=timeout + self._config.answer_grace)
        for part in parts:
            if not part.future.done():
                reason = (
                    _RC.REJECT_CODE_OUTCOME_UNKNOWN
                    if part.sent
                    else _RC.REJECT_CODE_DEADLINE_EXCEEDED
                )
                part.fail(command_error(reason, "no answer before the deadline"), final=True)

    def _collect(self, request: _Request, parts: list[Part]) -> list[tuple[int, str, int]]:
        """Results into place; the (index, shard, reason) of commands worth one retry."""
        retry: list[tuple[int, str, int]] = []
        results = request.results
        for part in parts:
            for j, i in enumerate(part.indices):
                result = part.results[j]
                results[i] = result
                reason = _did_nothing(result) if not part.final else 0
                if reason:
                    retry.append((i, part.shard_id, reason))
        return retry

    async def _before_retry(self, request: _Request, retry: list[tuple[int, str, int]]) -> None:
        if any(reason == _RC.REJECT_CODE_NOT_OWNER for _, _, reason in retry):
            with contextlib.suppress(Exception):  # etcd down: route by the last view
                async with asyncio.timeout(self._config.table_refresh_timeout):
                    await self._table.refresh()
        remaining = (request.deadline - time.time_ns()) / 1e9
        budget = max(0.0, min(request.max_wait, remaining))
        waits = {request.symbols[i]: (shard, reason) for i, shard, reason in retry}
        await asyncio.gather(
            *(self._await_change(s, shard, reason, budget) for s, (shard, reason) in waits.items())
        )

    async def _await_change(self, symbol: str, shard_id: str, reason: int, budget: float) -> None:
        """If the table still routes ``symbol`` to the shard that refused it, give the table
        a chance to catch up (bounded) before the one retry."""
        assignment = self._table.assignment(symbol)
        link = self._links.get(shard_id)
        if (
            assignment is None
            or not assignment.routable()
            or assignment.shard_id != shard_id
            or link is None
            or not link.ready
        ):
            return  # the table moved on, or the command was never sent: route it again
        if reason == _RC.REJECT_CODE_SYMBOL_RECOVERING:
            await asyncio.sleep(min(RECOVERY_PAUSE, budget))
            return
        with contextlib.suppress(TimeoutError):
            await self._table.wait_for(lambda v: v.assignments.get(symbol) != assignment, budget)


def _did_nothing(result: CommandResult | None) -> int:
    """The reason, if ``result`` says the shard did nothing and a retry may work; else 0."""
    if result is None:
        return 0
    kind = result.WhichOneof("result")
    reason: int
    if kind == "error":
        reason = result.error.reason
    elif kind == "mass_cancel" and not result.mass_cancel.reports:
        errors = result.mass_cancel.errors
        reason = errors[0].reason if len(errors) == 1 else 0
    else:
        return 0
    return reason if reason in RETRY_REASONS else 0


def _unreachable(link: ShardLink) -> orders_pb2.CommandError:
    return command_error(
        _RC.REJECT_CODE_SHUTTING_DOWN, f"shard {link.shard_id} unreachable; not sent"
    )


def _merge_mass_cancels(parts: list[tuple[Part, list[str]]]) -> CommandResult:
    merged = orders_pb2.MassCancelResult()
    for part, covered in parts:
        result = part.results[0]
        if result is None:
            continue
        kind = result.WhichOneof("result")
        if kind == "mass_cancel":
            merged.reports.extend(result.mass_cancel.reports)
            merged.errors.extend(result.mass_cancel.errors)
        elif kind == "error":
            merged.errors.extend(_per_symbol(result.error, covered))
    return CommandResult(mass_cancel=merged)


def _per_symbol(
    error: orders_pb2.CommandError, symbols: list[str]
) -> list[orders_pb2.CommandError]:
    """A shard that failed a shard-wide mass cancel as a whole (unreachable, its queue
    full, or no answer before its stream broke): a retryable error for each symbol it held,
    so the caller can retry the mass cancel on them (MassCancelResult.errors), wherever
    they live by then; the error as it is if there are none or it is not retryable."""
    if not error.retryable or not symbols:
        return [error]
    out = []
    for symbol in symbols:
        copy = orders_pb2.CommandError()
        copy.CopyFrom(error)
        copy.symbol = symbol
        out.append(copy)
    return out


def _finish(request: _Request) -> list[CommandResult]:
    """Caller's correlation ids; a mass cancel's failure as data (as on a shard)."""
    out: list[CommandResult] = []
    for command, kind, found in zip(request.commands, request.kinds, request.results,
                                    strict=True):  # fmt: skip
        # Every path answers; the fallback only makes sure no command is left without one.
        result = (
            found
            if found is not None
            else CommandResult(error=command_error(_RC.REJECT_CODE_OUTCOME_UNKNOWN, "no answer"))
        )
        if (
            kind == "mass_cancel"
            and result.WhichOneof("result") == "error"
            and result.error.reason != _MALFORMED
        ):
            result = CommandResult(mass_cancel=orders_pb2.MassCancelResult(errors=[result.error]))
        result.correlation_id = command.correlation_id
        out.append(result)
    return out
