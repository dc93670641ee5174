"""The shard's durable pipeline against a real Postgres: ack after commit, idempotency,
exact recovery, failed commits, fencing. In-process nodes, real gRPC on loopback."""

from __future__ import annotations

import asyncio

import grpc
import psycopg
import pytest

from matching.v1 import gateway_pb2, orders_pb2, types_pb2
from persistence import failpoints
from shard.server import ShardNode
from tests.checkers import check_durable_record
from tests.scrape import symbol_changes
from tests.shard.support import (
    config,
    gateway,
    place,
    prepare_db,
    running_node,
    submit,
    wire_flow,
)
from tools.services.ports import free_port

BTC = "BTC-USDT"


@pytest.fixture
async def db(pg_dsn: str) -> str:
    await prepare_db(pg_dsn)
    return pg_dsn


@pytest.fixture(autouse=True)
def no_failpoints() -> None:
    yield
    failpoints.configure("")


async def submit_until_accepted(stub, command, attempts: int = 100):  # type: ignore[no-untyped-def]
    """Retry a retryable failure the way a client would (bounded)."""
    for _ in range(attempts):
        results = await submit(stub, [command])
        if results[0].WhichOneof("result") != "error":
            return results
        assert results[0].error.retryable, results[0].error
        await asyncio.sleep(0.05)
    raise AssertionError("never accepted")


async def test_acknowledged_results_are_durable_and_replay_exactly(db: str) -> None:
    pbs = wire_flow(7, 1500)
    async with running_node(config(db)) as node:
        channel, stub = gateway(node.port)
        acked: list[int] = []
        async with channel:
            for start in range(0, len(pbs), 100):
                chunk = pbs[start : start + 100]
                for cmd, result in zip(chunk, await submit(stub, chunk), strict=True):
                    if cmd.WhichOneof("command") == "place_order" and result.report.order_id:
                        acked.append(result.report.order_id)
    summary = check_durable_record(db, acked)
    assert sum(summary.commands.values()) > 1000
    assert summary.fills > 50


async def test_restart_rebuilds_the_identical_book(db: str) -> None:
    pbs = [c for c in wire_flow(11, 800) if c.WhichOneof("command") == "place_order"]
    async with running_node(config(db)) as node:
        channel, stub = gateway(node.port)
        async with channel:
            await submit(stub, pbs)
        before = {s: node.engine.book(s).open_orders() for s in node.engine.symbols()}
        seqs = {s: node.engine.book(s).last_seq for s in node.engine.symbols()}
    assert any(before.values())
    async with running_node(config(db)) as node:
        after = {s: node.engine.book(s).open_orders() for s in node.engine.symbols()}
        assert after == before
        assert {s: node.engine.book(s).last_seq for s in node.engine.symbols()} == seqs
        assert all(o.epoch == 2 for o in map(node.ownership.get, node.ownership.owned()) if o)


async def test_idempotent_retries_across_a_restart(db: str) -> None:
    order = place(BTC, "alice", 2, 5, 100, cloid="c-1")
    async with running_node(config(db)) as node:
        channel, stub = gateway(node.port)
        async with channel:
            first = (await stub.SubmitOrder(gateway_pb2.SubmitOrderRequest(order=order))).report
            again = (await stub.SubmitOrder(gateway_pb2.SubmitOrderRequest(order=order))).report
    assert again.replayed and again.order_id == first.order_id and again.seq == first.seq
    async with running_node(config(db)) as node:  # empty in-memory index: Postgres answers
        channel, stub = gateway(node.port)
        async with channel:
            late = (await stub.SubmitOrder(gateway_pb2.SubmitOrderRequest(order=order))).report
            changed = place(BTC, "alice", 2, 6, 100, cloid="c-1")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.SubmitOrder(gateway_pb2.SubmitOrderRequest(order=changed))
    assert late.replayed and late.order_id == first.order_id and late.seq == first.seq
    assert first.side == again.side == late.side == types_pb2.SIDE_SELL  # rebuilt from Postgres
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with psycopg.connect(db) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM orders WHERE client_order_id = 'c-1'"
        ).fetchone()
        (journal,) = conn.execute("SELECT count(*) FROM journal").fetchone()
    assert count == 1 and journal == 1


async def test_a_retry_of_an_amended_order_replays_what_was_placed(db: str) -> None:
    """The stored placement is the one sent, not the order as amended since: after a
    restart (nothing in memory) the original content still replays."""
    order = place(BTC, "alice", 2, 5, 100, cloid="c-amended")
    async with running_node(config(db)) as node:
        channel, stub = gateway(node.port)
        async with channel:
            first = (await stub.SubmitOrder(gateway_pb2.SubmitOrderRequest(order=order))).report
            amend = orders_pb2.AmendOrder(
                symbol=BTC, account="alice", order_id=first.order_id, new_price=120, new_quantity=7
            )
            amended = (await stub.AmendOrder(gateway_pb2.AmendOrderRequest(amend=amend))).report
    assert (amended.price, amended.leaves_qty) == (120, 7)
    async with running_node(config(db)) as node:
        channel, stub = gateway(node.port)
        async with channel:
            late = (await stub.SubmitOrder(gateway_pb2.SubmitOrderRequest(order=order))).report
    assert late.replayed and late.order_id == first.order_id and late.seq == first.seq
    assert (late.price, late.side) == (100, types_pb2.SIDE_SELL)  # as placed


def _as_answered(report: orders_pb2.ExecutionReport) -> orders_pb2.ExecutionReport:
    """``report`` without what a replay may change: the flag and the time it was sent."""
    same = orders_pb2.ExecutionReport()
    same.CopyFrom(report)
    same.ClearField("replayed")
    same.ClearField("transact_time_unix_nanos")
    return same


async def test_a_retry_after_a_restart_answers_what_the_placement_answered(db: str) -> None:
    """Answered from Postgres (nothing in memory), a retry carries every field of the first
    answer: its fills' maker client order ids and leaves, the STP-expired makers, and the
    priority of what rests."""
    buy, sell = types_pb2.SIDE_BUY, types_pb2.SIDE_SELL
    expire_maker = types_pb2.STP_MODE_EXPIRE_MAKER
    makers = [
        place(BTC, "bob", sell, 3, 100, cloid="b-1"),
        place(BTC, "alice", sell, 2, 100, cloid="a-own"),
        place(BTC, "alice", sell, 4, 100, cloid="a-own-2"),
        place(BTC, "bob", sell, 10, 101, cloid="b-2"),
    ]
    takers = [
        place(BTC, "alice", buy, 5, 100, cloid="t-stp", stp=expire_maker),  # rests 2
        place(BTC, "carol", buy, 4, 101, cloid="t-partial"),  # b-2 keeps 6
    ]
    async with running_node(config(db)) as node:
        channel, stub = gateway(node.port)
        async with channel:
            for maker in makers:
                await stub.SubmitOrder(gateway_pb2.SubmitOrderRequest(order=maker))
            first = [
                (await stub.SubmitOrder(gateway_pb2.SubmitOrderRequest(order=t))).report
                for t in takers
            ]
    stp, partial = first
    assert len(stp.expired_order_ids) == 2 and stp.leaves_qty == 2 and stp.priority == stp.seq
    assert [f.maker_client_order_id for f in stp.fills] == ["b-1"]
    assert [f.maker_leaves_qty for f in partial.fills] == [6]
    async with running_node(config(db)) as node:  # empty in-memory index: Postgres answers
        channel, stub = gateway(node.port)
        async with channel:
            late = [
                (await stub.SubmitOrder(gateway_pb2.SubmitOrderRequest(order=t))).report
                for t in takers
            ]
    assert all(r.replayed for r in late)
    assert list(map(_as_answered, late)) == list(map(_as_answered, first))


async def test_failed_commit_is_never_acknowledged_and_the_shard_recovers(db: str) -> None:
    port = free_port()
    async with running_node(config(db, metrics_listen=f"127.0.0.1:{port}")) as node:
        channel, stub = gateway(node.port)
        async with channel:
            ok = await submit(
                stub, [orders_pb2.OrderCommand(place_order=place(BTC, "a", 2, 5, 100))]
            )
            failpoints.configure("before_commit=fail")
            failed = await submit(
                stub, [orders_pb2.OrderCommand(place_order=place(BTC, "b", 1, 5, 100))]
            )
            retry = orders_pb2.OrderCommand(place_order=place(BTC, "c", 1, 2, 100))
            after = await submit_until_accepted(stub, retry)
        changes = await asyncio.to_thread(symbol_changes, port, node.config.shard_id)
    # two symbols taken at start; each failed commit put BTC in recovery, each reload back
    assert changes["recovering"] >= 1
    assert changes == {"served": 2 + changes["recovering"], "recovering": changes["recovering"],
                       "moving": 0, "released": 0}  # fmt: skip
    assert ok[0].report.status == 1  # NEW, resting
    assert failed[0].WhichOneof("result") == "error" and failed[0].error.retryable
    assert after[0].report.status == 3 and after[0].report.fills[0].quantity == 2  # FILLED
    assert after[0].report.seq == 2  # the failed command's seq was never committed: reused
    with psycopg.connect(db) as conn:
        accounts = [r[0] for r in conn.execute("SELECT account FROM journal ORDER BY seq")]
    assert accounts == ["a", "c"]
    check_durable_record(db)


async def test_a_fenced_shard_commits_nothing_and_drops_the_symbol(db: str) -> None:
    port = free_port()
    async with running_node(config(db, shard_id="old", metrics_listen=f"127.0.0.1:{port}")) as old:
        channel, stub = gateway(old.port)
        async with channel:
            await submit(stub, [orders_pb2.OrderCommand(place_order=place(BTC, "a", 2, 5, 100))])
            async with running_node(config(db, shard_id="new", symbols=(BTC,))) as new:
                stale = await submit(
                    stub, [orders_pb2.OrderCommand(place_order=place(BTC, "b", 2, 1, 101))]
                )
                later = await submit(
                    stub, [orders_pb2.OrderCommand(place_order=place(BTC, "c", 2, 1, 102))]
                )
                eth = await submit(
                    stub, [orders_pb2.OrderCommand(place_order=place("ETH-USDT", "d", 2, 20, 100))]
                )
                assert new.engine.book(BTC).open_orders()[0].account == "a"
        changes = await asyncio.to_thread(symbol_changes, port, "old")
    assert changes == {"served": 2, "recovering": 0, "moving": 0, "released": 1}
    assert stale[0].WhichOneof("result") == "error"  # its commit was fenced
    assert later[0].error.reason == 100  # NOT_OWNER: the old shard let the symbol go
    assert eth[0].report.status == 1  # its other symbol keeps trading
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT account, epoch FROM journal WHERE symbol = %s ORDER BY seq", (BTC,)
        ).fetchall()
    assert rows == [("a", 1)]
    check_durable_record(db)


async def test_graceful_shutdown_commits_what_it_accepted(db: str) -> None:
    node = ShardNode(config(db))
    await node.start()
    channel, stub = gateway(node.port)
    pbs = wire_flow(5, 2000)
    chunks = [pbs[i : i + 50] for i in range(0, len(pbs), 50)]
    async with channel:
        calls = [asyncio.ensure_future(submit(stub, chunk)) for chunk in chunks]
        await asyncio.sleep(0.05)  # let some batches be in flight when shutdown begins
        await node.stop()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    acked = [
        result.report.order_id
        for chunk, outcome in zip(chunks, outcomes, strict=True)
        if not isinstance(outcome, BaseException)
        for cmd, result in zip(chunk, outcome, strict=True)
        if cmd.WhichOneof("command") == "place_order" and result.report.order_id
    ]
    assert acked, "no call completed before shutdown"
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(o, grpc.aio.AioRpcError) for o in failed), failed[:1]
    check_durable_record(db, acked)
