# mypy: disable-error-code="attr-defined"
# (grpc's stubs type aio stream calls as sync iterators: read() and its results are untyped)
"""Router commands carry the caller's deadline: one already past on arrival is not executed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import grpc
import psycopg

from matching.v1 import shard_pb2, shard_pb2_grpc, types_pb2
from tests.shard.support import config, place, prepare_db, running_node


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
