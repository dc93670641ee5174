"""A client order id used at once for symbols on two shards: exactly one placement wins,
the other is refused as a duplicate, and nothing else in either batch is disturbed.

Two in-process shards share one real Postgres. The test holds the journal table locked so
that both shards match their batches before either can commit: the race a unique index
alone would settle only at COMMIT, by failing a whole batch.
"""

from __future__ import annotations

import asyncio

import psycopg

from matching.v1 import orders_pb2, types_pb2
from tests.shard.support import config, gateway, place, prepare_db, running_node, submit

BTC, ETH = "BTC-USDT", "ETH-USDT"
T = types_pb2


def _command(order: orders_pb2.PlaceOrder, correlation_id: int) -> orders_pb2.OrderCommand:
    return orders_pb2.OrderCommand(correlation_id=correlation_id, place_order=order)


async def _wait_for_blocked_writers(dsn: str, count: int, timeout: float = 10.0) -> None:
    """Until ``count`` lock requests wait: a shard's batch is matched and writing (held by
    the journal lock, or by the other batch's uncommitted order row)."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        async with asyncio.timeout(timeout):
            while True:
                cur = await conn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
                row = await cur.fetchone()
                if row is not None and row[0] >= count:
                    return
                await asyncio.sleep(0.02)


async def test_one_client_order_id_racing_on_two_shards_places_once(pg_dsn: str) -> None:
    await prepare_db(pg_dsn)
    shard_a = config(pg_dsn, symbols=(BTC,), shard_id="shard-a")
    shard_b = config(pg_dsn, symbols=(ETH,), shard_id="shard-b")
    async with running_node(shard_a) as node_a, running_node(shard_b) as node_b:
        channel_a, stub_a = gateway(node_a.port)
        channel_b, stub_b = gateway(node_b.port)
        async with channel_a, channel_b:
            # Warm both shards up (a first commit each), so the race below is the only one.
            await submit(stub_a, [_command(place(BTC, "warm", 1, 1, 90, "w-a"), 1)])
            await submit(stub_b, [_command(place(ETH, "warm", 1, 20, 90, "w-b"), 1)])
            with psycopg.connect(pg_dsn) as blocker:
                blocker.execute("LOCK TABLE journal IN EXCLUSIVE MODE")
                on_a = asyncio.ensure_future(
                    submit(stub_a, [_command(place(BTC, "alice", 1, 2, 100, "dup"), 1)])
                )
                on_b = asyncio.ensure_future(
                    submit(
                        stub_b,
                        [
                            _command(place(ETH, "alice", 1, 20, 100, "dup"), 1),
                            _command(place(ETH, "bob", 1, 30, 100, "innocent"), 2),
                        ],
                    )
                )
                # B's batch always writes (bob's order); A's only if it won the id.
                await _wait_for_blocked_writers(pg_dsn, 1)
                await asyncio.sleep(0.3)  # the other shard matches meanwhile, or is done
                blocker.commit()  # lets the batches commit, in either order
            results_a, results_b = await asyncio.gather(on_a, on_b)
    winners = [r for r in (results_a[0], results_b[0]) if r.WhichOneof("result") == "report"]
    losers = [r for r in (results_a[0], results_b[0]) if r.WhichOneof("result") == "error"]
    assert len(winners) == 1 and len(losers) == 1, (results_a, results_b)
    assert losers[0].error.code == T.ERROR_CODE_ALREADY_EXISTS, losers[0]
    innocent = results_b[1]
    assert innocent.WhichOneof("result") == "report", innocent
    assert innocent.report.status == T.ORDER_STATUS_NEW
    with psycopg.connect(pg_dsn) as conn:
        placed = conn.execute(
            "SELECT symbol, order_id FROM orders WHERE account = 'alice'"
            " AND client_order_id = 'dup'"
        ).fetchall()
        (bob,) = conn.execute(
            "SELECT count(*) FROM orders WHERE account = 'bob' AND client_order_id = 'innocent'"
        ).fetchone()
    assert placed == [(winners[0].report.symbol, winners[0].report.order_id)]
    assert bob == 1


async def test_an_id_belongs_to_the_first_symbol_that_carried_it_even_if_rejected(
    pg_dsn: str,
) -> None:
    await prepare_db(pg_dsn)
    async with running_node(config(pg_dsn)) as node:
        channel, stub = gateway(node.port)
        async with channel:
            first, second = await submit(
                stub,
                [
                    _command(place(ETH, "alice", 1, 3, 100, "x"), 1),  # not a lot multiple
                    _command(place(BTC, "alice", 1, 3, 100, "x"), 2),
                ],
            )
            later = await submit(stub, [_command(place(BTC, "alice", 1, 3, 100, "x"), 3)])
    assert first.report.status == T.ORDER_STATUS_REJECTED
    assert second.error.code == T.ERROR_CODE_ALREADY_EXISTS, second
    assert later[0].error.code == T.ERROR_CODE_ALREADY_EXISTS, later
    with psycopg.connect(pg_dsn) as conn:
        (orders,) = conn.execute("SELECT count(*) FROM orders WHERE account = 'alice'").fetchone()
    assert orders == 0
