# mypy: disable-error-code="attr-defined"
# (grpc's stubs type aio stream calls as sync iterators: read() and its results are untyped)
"""A router link that reconnects sends its whole subscription state again, in bounded
messages (router/wire.py control_requests): with more accounts than one message holds, the
shard still ends up with every one, and reports reach an account of the last chunk."""

from __future__ import annotations

import asyncio

import pytest

from matching.v1 import gateway_pb2, orders_pb2
from router.wire import CONTROL_CHUNK
from tests.router.support import (
    BTC,
    BUY,
    SELL,
    TIMEOUT,
    cluster,
    limit,
    proxy_in_front,
    running_router,
    submit_order,
    trade,
    wait_until,
)

pytestmark = pytest.mark.integration

STREAMS = CONTROL_CHUNK // 1_000 + 1  # each subscribes 1,000 accounts (the stream limit)


async def test_a_reconnecting_link_subscribes_more_accounts_than_one_message_holds(
    pg_dsn: str,
) -> None:
    async with cluster(pg_dsn) as state, proxy_in_front(state, "shard-a") as proxy:
        node = await state.start_shard("shard-a", (BTC,), address=proxy.address)
        async with running_router(state) as (router, stub):
            accounts = [[f"acct-{s:02d}-{n:04d}" for n in range(1_000)] for s in range(STREAMS)]
            streams = [trade(stub) for _ in accounts]
            for call, mine in zip(streams, accounts, strict=True):
                options = gateway_pb2.TradeStreamOptions(accounts=mine)
                await call.write(gateway_pb2.TradeRequest(options=options))
            everyone = {a for mine in accounts for a in mine}
            assert await wait_until(lambda: node.subscribers.accounts() >= everyone, TIMEOUT)
            link = router.links.get("shard-a")
            assert link is not None
            proxy.break_all()  # the shard drops the link's subscriptions with its stream
            assert await wait_until(lambda: not link.ready, TIMEOUT)
            assert await wait_until(lambda: link.ready, TIMEOUT)
            assert await wait_until(lambda: node.subscribers.accounts() >= everyone, TIMEOUT)

            last = accounts[-1][-1]  # subscribed by the last chunk
            maker = await submit_order(stub, limit(BTC, last, SELL, 1, 500, "m"))
            await submit_order(stub, limit(BTC, "taker", BUY, 1, 500, "t"))
            message = await asyncio.wait_for(streams[-1].read(), TIMEOUT)
            (fill,) = message.results
            assert fill.report.kind == orders_pb2.REPORT_KIND_MAKER_FILL
            assert fill.report.order_id == maker.order_id
            for call in streams:
                call.cancel()
