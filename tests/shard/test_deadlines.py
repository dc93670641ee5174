# mypy: disable-error-code="attr-defined"
# (grpc's stubs type aio stream calls as sync iterators: read() and its results are untyped)
"""Commands carry deadlines (a router's: the caller's; a client's own: stale-quote
protection). One whose deadline passes before it runs is answered DEADLINE_EXCEEDED and not
executed, whether it came late or waited too long in the shard."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import psycopg

from api.limits import INT64_MAX
from matching.v1 import (
    gateway_pb2,
    gateway_pb2_grpc,
    orders_pb2,
    shard_pb2,
    shard_pb2_grpc,
    types_pb2,
)
from persistence.rows import BatchRows
from shard.admission import Admission
from shard.engine import MatchingEngine, PlaceOrder, Report, SymbolSpec
from shard.errors import CommandFailure
from shard.idempotency import IdempotencyIndex
from shard.ownership import Ownership
from tests.api.test_deadlines import TEN_THOUSAND_YEARS
from tests.shard.support import all_new, config, place, prepare_db, running_node


async def test_command_past_its_deadline_is_refused_and_not_journaled(pg_dsn: str) -> None:
    await prepare_db(pg_dsn)
    now = time.time_ns()
    late = shard_pb2.ShardCommand(
        correlation_id=1,
        deadline_unix_nanos=now - 1_000_000,
        place_order=place("BTC-USDT", "late", 1, 1, 100, "late-1"),
    )
    timely = shard_pb2.ShardCommand(
        correlation_id=2,
        deadline_unix_nanos=now + 10_000_000_000,
        place_order=place("BTC-USDT", "timely", 1, 1, 100, "timely-1"),
    )

    async def requests() -> AsyncIterator[shard_pb2.ExecuteRequest]:
        yield shard_pb2.ExecuteRequest(batch_id=1, commands=[late, timely])

    async with (
        running_node(config(pg_dsn)) as node,
        grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel,
    ):
        call = shard_pb2_grpc.ShardServiceStub(channel).Execute(requests())
        answer = await call.read()
    late_result, timely_result = answer.results
    assert late_result.error.reason == types_pb2.REJECT_CODE_DEADLINE_EXCEEDED
    assert not late_result.error.retryable
    assert timely_result.report.order_id
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT account FROM journal ORDER BY seq").fetchall()
    assert rows == [("timely",)]


async def test_a_clients_own_deadline_is_kept_on_a_trade_stream(pg_dsn: str) -> None:
    await prepare_db(pg_dsn)
    now = time.time_ns()
    stale_quote = orders_pb2.OrderCommand(
        correlation_id=1,
        deadline_unix_nanos=now - 1,
        place_order=place("BTC-USDT", "mm", 2, 1, 100, "stale-1"),
    )
    fresh_quote = orders_pb2.OrderCommand(
        correlation_id=2,
        deadline_unix_nanos=now + 10_000_000_000,
        place_order=place("BTC-USDT", "mm", 2, 1, 101, "fresh-1"),
    )

    async def requests() -> AsyncIterator[gateway_pb2.TradeRequest]:
        yield gateway_pb2.TradeRequest(commands=[stale_quote, fresh_quote])

    async with (
        running_node(config(pg_dsn)) as node,
        grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel,
    ):
        call = gateway_pb2_grpc.OrderGatewayServiceStub(channel).Trade(requests())
        answer = await call.read()
    stale, fresh = answer.results
    assert stale.error.reason == types_pb2.REJECT_CODE_DEADLINE_EXCEEDED
    assert stale.error.code == types_pb2.ERROR_CODE_DEADLINE_EXCEEDED
    assert fresh.report.order_id
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT client_order_id FROM journal ORDER BY seq").fetchall()
    assert rows == [("fresh-1",)]


def test_the_deadline_is_judged_when_the_batch_is_matched() -> None:
    """Admission compares each command's deadline with the time its batch is matched (not
    when it arrived): a command that waited past its deadline in the inbox is not run."""
    engine, ownership = MatchingEngine(), Ownership()
    engine.add_symbol(SymbolSpec("BTC-USDT", 1))
    ownership.serve("BTC-USDT", 1)

    admission = Admission(engine, ownership, IdempotencyIndex(), all_new)
    orders = [PlaceOrder("BTC-USDT", "a", 1, 1, 100, client_order_id=f"c{i}") for i in range(3)]
    rows = BatchRows()
    matched_at = 2_000
    outcomes = admission.admit_all(orders, rows, set(), [1_999, 2_000, 0], matched_at)
    late, on_time, no_deadline = outcomes
    assert (
        isinstance(late, CommandFailure) and late.reason == types_pb2.REJECT_CODE_DEADLINE_EXCEEDED
    )
    assert isinstance(on_time, Report) and isinstance(no_deadline, Report)
    assert [j.client_order_id for j in rows.journal] == ["c1", "c2"]  # the late one left no trace


class _CallWithDeadline:
    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining

    def time_remaining(self) -> float | None:
        return self.remaining


def test_a_unary_calls_deadline_bounds_its_command() -> None:
    from shard.gateway import _bound_by_call_deadline

    no_deadline = orders_pb2.OrderCommand(place_order=place("BTC-USDT", "a", 1, 1, 100))
    _bound_by_call_deadline(no_deadline, _CallWithDeadline(None))
    assert no_deadline.deadline_unix_nanos == 0
    before = time.time_ns()
    bounded = orders_pb2.OrderCommand(place_order=place("BTC-USDT", "a", 1, 1, 100))
    _bound_by_call_deadline(bounded, _CallWithDeadline(2.0))
    assert before + 1_900_000_000 < bounded.deadline_unix_nanos < time.time_ns() + 2_000_000_000
    own = before + 1_000  # the command's own, earlier deadline wins
    earlier = orders_pb2.OrderCommand(deadline_unix_nanos=own, place_order=bounded.place_order)
    _bound_by_call_deadline(earlier, _CallWithDeadline(2.0))
    assert earlier.deadline_unix_nanos == own


def test_a_call_deadline_past_int64_bounds_its_command_at_the_largest() -> None:
    """Before: storing now + 10,000 years in the int64 field raised, failing the call."""
    from shard.gateway import _bound_by_call_deadline

    command = orders_pb2.OrderCommand(place_order=place("BTC-USDT", "a", 1, 1, 100))
    _bound_by_call_deadline(command, _CallWithDeadline(TEN_THOUSAND_YEARS))
    assert command.deadline_unix_nanos == INT64_MAX
    command.deadline_unix_nanos = 5
    _bound_by_call_deadline(command, _CallWithDeadline(TEN_THOUSAND_YEARS))
    assert command.deadline_unix_nanos == 5  # its own, earlier deadline stands
