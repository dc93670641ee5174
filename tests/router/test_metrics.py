"""A router's Prometheus endpoint (router/metrics.py), scraped over HTTP after unary calls, a
batch and a Trade stream through it to a real shard."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from matching.v1 import gateway_pb2
from telemetry.metrics import reject_label
from tests.router.support import (
    BTC,
    BUY,
    SELL,
    Cluster,
    T,
    batch,
    cluster,
    cmd,
    limit,
    running_router,
    submit_order,
    trade,
)
from tests.scrape import scrape
from tools.services.ports import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
async def one_shard(pg_dsn: str) -> Any:
    """A cluster of one shard, and the port of the shard's Prometheus endpoint."""
    async with cluster(pg_dsn) as state:
        port = free_port()  # the shard's Prometheus endpoint
        await state.start_shard("shard-a", (BTC,), metrics_listen=f"127.0.0.1:{port}")
        yield state, port


async def test_calls_by_kind_and_commands_by_result(one_shard: tuple[Cluster, int]) -> None:
    shard_cluster, shard_metrics = one_shard
    port = free_port()
    listen = f"127.0.0.1:{port}"
    async with running_router(shard_cluster, router_id="metrics-r", metrics_listen=listen) as (
        _,
        stub,
    ):
        for n in range(3):
            report = await submit_order(stub, limit(BTC, "mm", SELL, 1, 100 + n, f"u{n}"))
            assert report.status == T.ORDER_STATUS_NEW
        results = await batch(
            stub,
            [
                cmd(1, place_order=limit(BTC, "mm", BUY, 1, 90, "b1")),
                cmd(2, place_order=limit("NOPE-USDT", "mm", BUY, 1, 90, "b2")),
            ],
        )
        assert results[1].error.reason == T.REJECT_CODE_UNKNOWN_SYMBOL
        stream = trade(stub)
        for n in range(2):
            place = cmd(10 + n, place_order=limit(BTC, "mm", BUY, 1, 80, f"t{n}"))
            await stream.write(gateway_pb2.TradeRequest(commands=[place]))
            assert (await stream.read()).results[0].report.status == T.ORDER_STATUS_NEW
        await stream.done_writing()
        seen = await asyncio.to_thread(scrape, port)
        at_shard = await asyncio.to_thread(scrape, shard_metrics)
    router = ("router", "metrics-r")
    executes = at_shard[
        ("spotmatch_shard_request_seconds_count", (("kind", "execute"), ("shard", "shard-a")))
    ]
    assert 1 <= executes <= 6  # the 6 calls' commands for BTC, as the link batched them

    def calls(kind: str) -> float:
        return seen[("spotmatch_router_request_seconds_count", (("kind", kind), router))]

    assert (calls("unary"), calls("batch"), calls("trade")) == (3, 1, 2)
    ok = seen[("spotmatch_router_commands_total", (("result", "ok"), router))]
    unknown = seen[("spotmatch_router_commands_total", (("result", "unknown_symbol"), router))]
    assert (ok, unknown) == (6, 1)
    assert seen[("spotmatch_router_links_ready", (router,))] == 1
    assert seen[("spotmatch_router_buffered_commands", (router,))] == 0
    for ended in ("marker", "stream", "timeout"):  # no symbol changed owner
        key = ("spotmatch_router_handover_waits_total", (("ended", ended), router))
        assert seen[key] == 0


def test_a_reject_code_this_router_does_not_name_is_counted_not_raised() -> None:
    assert reject_label(T.REJECT_CODE_UNKNOWN_SYMBOL) == "unknown_symbol"
    assert reject_label(9_999) == "unrecognised"
