# mypy: disable-error-code="attr-defined"
# (grpc's stubs type aio stream calls as sync iterators: read() and its results are untyped)
"""A shard that stops serving a symbol says so on every Execute stream, behind what it sent
about it (ExecuteResponse.released; routers wait for it before routing the symbol to its
new owner: router/handovers.py). Here the symbol is fenced off by a newer owner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg

from matching.v1 import orders_pb2, shard_pb2, shard_pb2_grpc
from matching.v1 import types_pb2 as T
from persistence.fencing import claim_next_epoch
from tests.shard.support import config, gateway, place, prepare_db, running_node, submit

BTC, ETH = "BTC-USDT", "ETH-USDT"
TIMEOUT = 10.0


async def test_a_fenced_off_symbol_is_released_on_every_execute_stream(pg_dsn: str) -> None:
    await prepare_db(pg_dsn)
    async with running_node(config(pg_dsn, (BTC, ETH))) as node:
        held = node.ownership.get(BTC)
        assert held is not None
        channel, stub = gateway(node.port)
        done = asyncio.Event()

        async def requests(account: str) -> AsyncIterator[shard_pb2.ExecuteRequest]:
            yield shard_pb2.ExecuteRequest(
                options=shard_pb2.ExecuteStreamOptions(router_id=f"router-{account}"),
                subscribe=[shard_pb2.AccountSubscription(account=account)],
            )
            await done.wait()

        async with channel:
            execute = shard_pb2_grpc.ShardServiceStub(channel).Execute
            makers, others = execute(requests("maker")), execute(requests("other"))
            while node.subscribers.accounts() != {"maker", "other"}:
                await asyncio.sleep(0.02)
            maker = orders_pb2.OrderCommand(place_order=place(BTC, "maker", T.SIDE_SELL, 2, 500))
            taker = orders_pb2.OrderCommand(place_order=place(BTC, "taker", T.SIDE_BUY, 1, 500))
            assert (await submit(stub, [maker, taker]))[1].report.status == T.ORDER_STATUS_FILLED

            async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
                newer = await claim_next_epoch(conn, BTC, "shard-2")  # another owner fences
            assert newer > held.epoch
            again = orders_pb2.OrderCommand(place_order=place(BTC, "late", T.SIDE_BUY, 1, 100))
            other = orders_pb2.OrderCommand(place_order=place(ETH, "x", T.SIDE_SELL, 20, 900))
            await submit(stub, [again])  # its commit is fenced: the shard drops BTC
            assert node.ownership.get(BTC) is None
            assert (await submit(stub, [other]))[0].report.status == T.ORDER_STATUS_NEW

            async with asyncio.timeout(TIMEOUT):
                fill = await makers.read()
                released = [await makers.read(), await others.read()]
            (report,) = (r.report for r in fill.results)
            assert report.kind == orders_pb2.REPORT_KIND_MAKER_FILL, fill
            for message in released:  # on a stream that had reports of BTC, and on one without
                assert not message.results and not message.batch_id, message
                assert [(r.symbol, r.epoch) for r in message.released] == [(BTC, held.epoch)]
            done.set()
