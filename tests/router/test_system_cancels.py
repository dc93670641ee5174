# mypy: disable-error-code="attr-defined"
# (grpc's stubs type aio stream calls as sync iterators: read() and its results are untyped)
"""Clients are told when the system cancels their orders (REPORT_KIND_SYSTEM_CANCEL): a
router's broken link to a shard, and a cancel-on-disconnect of another stream of the same
account. Real shards, a router in-process; the cancels are checked in Postgres too."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from matching.v1 import gateway_pb2, orders_pb2
from tests.router.support import (
    BTC,
    ETH,
    SELL,
    TIMEOUT,
    Stub,
    cluster,
    cmd,
    limit,
    open_orders,
    proxy_in_front,
    running_router,
    trade,
    wait_until,
)

pytestmark = pytest.mark.integration

SYSTEM_CANCEL = orders_pb2.REPORT_KIND_SYSTEM_CANCEL


async def resting_stream(
    stub: Stub, account: str, *, cancel_on_disconnect: bool
) -> tuple[Any, set[int]]:
    """A Trade stream of ``account`` with one resting order on each of BTC and ETH."""
    call = trade(stub)
    options = gateway_pb2.TradeStreamOptions(
        accounts=[account], cancel_on_disconnect=cancel_on_disconnect
    )
    commands = [
        cmd(1, place_order=limit(BTC, account, SELL, 1, 900)),
        cmd(2, place_order=limit(ETH, account, SELL, 20, 900)),
    ]
    await call.write(gateway_pb2.TradeRequest(options=options, commands=commands))
    answer = await asyncio.wait_for(call.read(), TIMEOUT)
    placed = {r.report.order_id for r in answer.results}
    assert len(placed) == 2 and 0 not in placed, answer
    return call, placed


async def cancelled_as_told(call: Any, expected: int) -> set[int]:
    """The order ids of SYSTEM_CANCEL reports read from ``call`` until ``expected`` came."""
    told: set[int] = set()
    async with asyncio.timeout(TIMEOUT):
        while len(told) < expected:
            message = await call.read()
            for result in message.results:
                assert result.report.kind == SYSTEM_CANCEL, result
                assert result.report.account == "mm" and result.report.seq > 0, result
                told.update(result.report.expired_order_ids)
    return told


async def test_a_broken_link_tells_the_clients_what_the_shard_cancelled(pg_dsn: str) -> None:
    """The network between router and shard fails while both stay up: the shard ends the
    link's stream and cancels what it subscribed with cancel-on-disconnect. The client is
    still connected to the router; once the link is back, it learns what was cancelled."""
    async with cluster(pg_dsn) as state, proxy_in_front(state, "shard-a") as proxy:
        await state.start_shard("shard-a", (BTC, ETH), address=proxy.address)
        async with running_router(state) as (router, stub):
            call, placed = await resting_stream(stub, "mm", cancel_on_disconnect=True)
            link = router.links.get("shard-a")
            assert link is not None and link.ready
            proxy.break_all()
            assert await cancelled_as_told(call, len(placed)) == placed
            assert await open_orders(pg_dsn, "mm") == []
            assert await wait_until(lambda: link.ready, TIMEOUT)
            call.cancel()


async def test_a_cancel_on_disconnect_tells_the_accounts_streams_on_every_router(
    pg_dsn: str,
) -> None:
    """mm trades through router r1 with cancel-on-disconnect and watches from r1 and from
    r2. The stream goes; r1 cancels its orders on both shards, and both watchers are told:
    r2's only because the shards tell every subscribed router (MassCancel.on_disconnect)."""
    async with (
        cluster(pg_dsn) as state,
    ):
        await state.start_shard("shard-a", (BTC,))
        await state.start_shard("shard-b", (ETH,))
        async with (
            running_router(state, router_id="r1") as (_, stub),
            running_router(state, router_id="r2") as (_, other_stub),
        ):
            watchers = [trade(stub), trade(other_stub)]
            options = gateway_pb2.TradeStreamOptions(accounts=["mm"])
            for watcher in watchers:
                await watcher.write(gateway_pb2.TradeRequest(options=options))
            gone, placed = await resting_stream(stub, "mm", cancel_on_disconnect=True)
            gone.cancel()
            for watcher in watchers:
                assert await cancelled_as_told(watcher, len(placed)) == placed
            assert await open_orders(pg_dsn, "mm") == []
            for watcher in watchers:
                watcher.cancel()
