"""A shard's Prometheus endpoint (shard/metrics.py), scraped over HTTP after real commands on
a real Postgres: the counts by outcome equal the durable journal's."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from matching.v1 import gateway_pb2, orders_pb2
from tests.scrape import scrape
from tests.shard.support import config, gateway, place, prepare_db, running_node, submit
from tools.services.ports import free_port

pytestmark = pytest.mark.integration

BTC, ETH = "BTC-USDT", "ETH-USDT"  # ETH: tick 5


async def test_commands_by_outcome_batches_and_gauges_match_the_journal(pg_dsn: str) -> None:
    await prepare_db(pg_dsn)
    port = free_port()
    cfg = config(pg_dsn, shard_id="metrics-1", metrics_listen=f"127.0.0.1:{port}")
    async with running_node(cfg) as node:
        channel, stub = gateway(node.port)
        commands = [
            orders_pb2.OrderCommand(correlation_id=1, place_order=place(BTC, "a", 2, 5, 100)),
            orders_pb2.OrderCommand(correlation_id=2, place_order=place(BTC, "b", 1, 2, 100)),
            orders_pb2.OrderCommand(correlation_id=3, place_order=place(ETH, "b", 1, 20, 101)),
            orders_pb2.OrderCommand(  # not the owner of this one: refused unexecuted
                correlation_id=4, place_order=place("NOPE-USDT", "b", 1, 2, 100)
            ),
        ]
        results = await submit(stub, commands)
        unary = await stub.SubmitOrder(
            gateway_pb2.SubmitOrderRequest(order=place(BTC, "c", 2, 1, 103))
        )
        await channel.close()
        assert [r.WhichOneof("result") for r in results] == ["report"] * 3 + ["error"]
        seen = await asyncio.to_thread(scrape, port)
    shard = ("shard", "metrics-1")

    def commands_total(outcome: str) -> float:
        return seen.get(("spotmatch_shard_commands_total", (("outcome", outcome), shard)), 0.0)

    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        cur = await conn.execute("SELECT reject_code, count(*) FROM journal GROUP BY 1")
        journal: dict[int, int] = dict(await cur.fetchall())
    # ETH at 101 is off its tick: an engine reject, journaled like the others
    assert journal == {0: 3, 9: 1}
    assert commands_total("accepted") == 3
    assert commands_total("price_not_tick_multiple") == 1
    assert commands_total("unknown_symbol") == 1  # refused before matching: not journaled
    assert seen[("spotmatch_shard_batch_commands_count", (shard,))] >= 1
    assert seen[("spotmatch_shard_batch_commands_sum", (shard,))] == 5
    assert seen[("spotmatch_shard_commit_seconds_count", (shard,))] >= 1
    assert seen[("spotmatch_shard_failed_commits_total", (shard,))] == 0
    assert seen[("spotmatch_shard_symbols", (shard, ("state", "serving")))] == 2
    assert seen[("spotmatch_shard_queued_commands", (shard,))] == 0
    assert unary.report.status == 1

    def calls(kind: str) -> float:
        return seen[("spotmatch_shard_request_seconds_count", (("kind", kind), shard))]

    assert [calls(kind) for kind in ("unary", "batch", "trade", "execute")] == [1, 1, 0, 0]
