"""Crash and fault tests of the shard node: real `python -m shard` processes, real Postgres.

Each test injects one fault (a crash just before or just after COMMIT, kill -9 under load,
a Postgres immediate stop, a second owner of a symbol) and judges the outcome from the
durable record only: every acknowledged report is the committed result at its (symbol, seq),
a retry by client order id never executes twice, and the reference matcher's replay of the
journal gives exactly the durable fills and resting orders (tests/checkers.py).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest

from matching.v1 import gateway_pb2, orders_pb2
from tests.checkers import check_durable_record
from tests.shard.fault_support import (
    BTC,
    ETH,
    MIXED,
    PLACEMENTS_ONLY,
    REASON_NOT_OWNER,
    REASON_OUTCOME_UNKNOWN,
    ClientLog,
    OrderFlow,
    Shards,
    Stub,
    batch_client,
    check_acks_match_journal,
    committed_batches,
    durable_placements,
    executed_placements,
    key_of,
    merged,
    persistent_client,
    replayed_books,
    resubmit,
    served_book,
    submit,
    trade_client,
    wait_until,
)
from tests.shard.support import config, gateway, place, prepare_db, running_node
from tools.services import PostgresServer

pytestmark = pytest.mark.integration

CLIENTS = 4
BOOK_DEPTH = 50  # the levels per side a shard keeps for committed-book reads


@pytest.fixture
async def db(pg_dsn: str) -> str:
    await prepare_db(pg_dsn)
    return pg_dsn


@pytest.fixture
def shards(tmp_path: Path) -> Iterator[Shards]:
    started = Shards(tmp_path)
    yield started
    started.kill_all()


async def _load_until_crash(stub: Stub, seed: int) -> ClientLog:
    """Concurrent SubmitBatch clients of placements, until the shard dies under them."""
    flows = [OrderFlow(i, seed, PLACEMENTS_ONLY) for i in range(CLIENTS)]
    logs = [ClientLog() for _ in flows]
    await asyncio.gather(
        *(batch_client(stub, f, log, size=10, batches=100, seconds=30)
          for f, log in zip(flows, logs, strict=True))
    )  # fmt: skip
    return merged(logs)


async def _crash_at_commit(db: str, shards: Shards, failpoint: str, seed: int) -> ClientLog:
    shard = await shards.start(db, failpoints=failpoint)
    channel, stub = gateway(shard.port)
    async with channel:
        log = await _load_until_crash(stub, seed)
    assert shard.wait_exit(10) == 137, f"no crash at {failpoint}:\n{shard.log_tail()}"
    assert log.acked, "nothing was acknowledged before the crash"
    assert log.unanswered, "no command was in flight when the shard crashed"
    assert not log.refused, [e for _, e in log.refused][:3]
    # What the clients were told before the crash is exactly what is durable.
    check_acks_match_journal(db, log)
    check_durable_record(db, log.acked_order_ids())
    return log


async def _retry_after_restart(db: str, shards: Shards, log: ClientLog) -> ClientLog:
    """Restart without failpoints; retry every unanswered placement with its client order id.

    A retry is a replay of the durable original iff that placement committed before the
    crash; otherwise it executes now. Returns the retries' log."""
    committed = durable_placements(db)
    shard = await shards.start(db)
    retries = ClientLog()
    channel, stub = gateway(shard.port)
    async with channel:
        await resubmit(stub, log.unanswered, retries)
    assert not retries.unanswered and not retries.refused, retries.refused[:3]
    for command, result in retries.acked:
        report, key = result.report, key_of(command)
        if key in committed:
            assert report.replayed and report.order_id == committed[key], key
        else:
            assert not report.replayed and report.order_id, key
    submitted = {key_of(c) for c, _ in log.acked} | {key_of(c) for c in log.unanswered}
    assert executed_placements(db) == dict.fromkeys(submitted, 1), "lost or doubled placements"
    check_acks_match_journal(db, retries)
    check_durable_record(db, log.acked_order_ids() + retries.acked_order_ids())
    return retries


async def test_crash_before_commit_acknowledges_nothing_uncommitted(
    db: str, shards: Shards
) -> None:
    log = await _crash_at_commit(db, shards, "before_commit=crash:8", seed=1)
    assert committed_batches(db) == 7, "only the 7 batches before the crashing one commit"
    durable = durable_placements(db)
    lost = [c for c in log.unanswered if key_of(c) not in durable]
    assert lost, "the batch that died before COMMIT should have left nothing durable"
    await _retry_after_restart(db, shards, log)


async def test_crash_after_commit_before_ack_replays_on_retry(db: str, shards: Shards) -> None:
    log = await _crash_at_commit(db, shards, "after_commit=crash:6", seed=2)
    assert committed_batches(db) == 6, "the 6th batch committed, then the shard died"
    durable = durable_placements(db)
    never_acked = [c for c in log.unanswered if key_of(c) in durable]
    assert never_acked, "the batch committed just before the crash should be durable, unacked"
    retries = await _retry_after_restart(db, shards, log)
    replayed = {key_of(c) for c, r in retries.acked if r.report.replayed}
    assert replayed == {key_of(c) for c in never_acked}
    # The acknowledged ones replay too, with exactly the answer first given.
    shard = shards.started[-1]
    again = ClientLog()
    channel, stub = gateway(shard.port)
    async with channel:
        await resubmit(stub, [c for c, _ in log.acked[:200]], again)
    for (_, first), (_, retry) in zip(log.acked[:200], again.acked, strict=True):
        assert retry.report.replayed
        assert (retry.report.order_id, retry.report.seq, retry.report.cum_qty) == (
            first.report.order_id, first.report.seq, first.report.cum_qty,
        )  # fmt: skip


async def test_kill_9_under_load_rebuilds_the_durable_book(db: str, shards: Shards) -> None:
    shard = await shards.start(db)
    flows = [OrderFlow(i, 3, MIXED) for i in range(CLIENTS)]
    logs = [ClientLog() for _ in flows]
    began = time.monotonic()
    channel, stub = gateway(shard.port)
    async with channel:
        clients = [
            asyncio.create_task(trade_client(stub, f, log, size=20, messages=5_000, window=4,
                                             seconds=20))
            for f, log in zip(flows, logs, strict=True)
        ]  # fmt: skip
        await wait_until(
            lambda: time.monotonic() - began > 2.0 and sum(len(g.acked) for g in logs) > 1_000,
            15, "load before the kill",
        )  # fmt: skip
        assert not any(c.done() for c in clients), "the load ended before the kill"
        assert shard.kill() == -signal.SIGKILL
        await asyncio.wait_for(asyncio.gather(*clients), 20)
    log = merged(logs)
    assert log.unanswered, "nothing was in flight at the kill"
    assert {c.WhichOneof("command") for c, _ in log.acked} >= {"cancel_order", "amend_order"}
    check_acks_match_journal(db, log)
    expected = replayed_books(db, BOOK_DEPTH)
    restarted = await shards.start(db)
    channel, stub = gateway(restarted.port)
    async with channel:
        for symbol in (BTC, ETH):
            assert await served_book(stub, symbol, BOOK_DEPTH) == expected[symbol], symbol
        # It trades on from the durable state: a taker sweeps the rebuilt best ask.
        after = ClientLog()
        taker = OrderFlow(99, 3, {"ioc": 1}, symbols=(BTC,))
        await resubmit(stub, taker.batch(5), after)
    assert [r.report.seq for _, r in after.acked] == list(
        range(expected[BTC].seq + 1, expected[BTC].seq + 6)
    )
    check_acks_match_journal(db, after)
    summary = check_durable_record(db, log.acked_order_ids() + after.acked_order_ids())
    assert summary.fills > 0 and summary.resting > 0


async def test_an_amend_expired_by_stp_stays_expired_after_a_crash(db: str, shards: Shards) -> None:
    """A crossing amend whose own order self-trade prevention expires (EXPIRE_TAKER) must
    leave nothing resting, in memory and in Postgres alike: the restarted book is the same."""
    shard = await shards.start(db)
    amend = orders_pb2.AmendOrder(symbol=BTC, account="x", client_order_id="bid", new_price=201)
    commands = [
        orders_pb2.OrderCommand(correlation_id=1, place_order=place(BTC, "x", 2, 5, 201, "ask")),
        orders_pb2.OrderCommand(correlation_id=2, place_order=place(BTC, "x", 1, 5, 199, "bid",
                                                                    stp=2)),
        orders_pb2.OrderCommand(correlation_id=3, amend_order=amend),
    ]  # fmt: skip
    log = ClientLog()
    channel, stub = gateway(shard.port)
    async with channel:
        log.record(commands, await submit(stub, commands))
        before = await served_book(stub, BTC, BOOK_DEPTH)
    amended = log.acked[2][1].report
    assert (amended.status, amended.reject_code, amended.leaves_qty) == (6, 23, 0)  # STP expiry
    assert (before.bids, before.asks) == ([], [(201, 5, 1)])
    assert shard.kill() == -signal.SIGKILL
    restarted = await shards.start(db)
    channel, stub = gateway(restarted.port)
    async with channel:
        after = await served_book(stub, BTC, BOOK_DEPTH)
    assert after == before, "the restarted shard's book differs from the acknowledged one"
    check_acks_match_journal(db, log)
    check_durable_record(db, log.acked_order_ids())


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(tmp_path / "pg")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_postgres_immediate_restart_under_load(
    own_postgres: PostgresServer, shards: Shards
) -> None:
    dsn = own_postgres.create_database("faults")
    await prepare_db(dsn)
    shard = await shards.start(dsn)
    flows = [OrderFlow(i, 4, MIXED) for i in range(3)]
    logs = [ClientLog() for _ in flows]
    stop = asyncio.Event()
    channel, stub = gateway(shard.port)
    async with channel:
        clients = [
            asyncio.create_task(persistent_client(stub, f, log, stop, size=10, seconds=60))
            for f, log in zip(flows, logs, strict=True)
        ]
        await wait_until(lambda: sum(len(g.acked) for g in logs) > 300, 15, "load before stop")
        await asyncio.to_thread(own_postgres.stop, "immediate")
        await asyncio.sleep(1.0)  # the outage itself: Postgres stays down this long
        await asyncio.to_thread(own_postgres.start)
        up = time.monotonic()
        await wait_until(
            lambda: all(g.ack_times and g.ack_times[-1] > up for g in logs),
            20, "every client acknowledged again after Postgres came back",
        )  # fmt: skip
        acked_at_recovery = sum(len(g.acked) for g in logs)
        await wait_until(
            lambda: sum(len(g.acked) for g in logs) > acked_at_recovery + 300, 15, "load after"
        )
        stop.set()
        await asyncio.wait_for(asyncio.gather(*clients), 30)
    assert shard.proc is not None and shard.proc.poll() is None, "the shard process died"
    log = merged(logs)
    assert not log.unanswered, f"{len(log.unanswered)} commands never got a final answer"
    assert any(e.retryable for _, e in log.refused), "the outage went unnoticed by clients"
    assert all(e.retryable for _, e in log.refused), [e for _, e in log.refused if not e.retryable]
    check_acks_match_journal(dsn, log)
    executed = executed_placements(dsn)
    assert all(n == 1 for n in executed.values()), "a retried placement executed twice"
    placed = {key_of(c) for c, r in log.acked if r.report.order_id and c.HasField("place_order")}
    assert placed <= set(executed)
    check_durable_record(dsn, log.acked_order_ids())


async def _answer(stub: Stub, command: orders_pb2.OrderCommand) -> orders_pb2.CommandResult:
    request = gateway_pb2.SubmitBatchRequest(commands=[command])
    try:
        reply = await stub.SubmitBatch(request, timeout=5)
    except grpc.aio.AioRpcError as exc:
        raise AssertionError(f"no answer from the shard: {exc.code().name}") from None
    (result,) = reply.results
    return result


async def _until_acked(
    stub: Stub, command: orders_pb2.OrderCommand, seconds: float
) -> orders_pb2.CommandResult:
    deadline = time.monotonic() + seconds
    result = await _answer(stub, command)
    while result.WhichOneof("result") == "error" and time.monotonic() < deadline:
        assert result.error.retryable, result.error
        await asyncio.sleep(0.1)
        result = await _answer(stub, command)
    assert result.WhichOneof("result") == "report", f"still refused: {result.error}"
    return result


async def test_a_client_order_id_lookup_failing_on_a_dead_database_is_retryable(
    own_postgres: PostgresServer,
) -> None:
    """With Postgres gone, a placement whose client order id must be looked up gets a
    retryable refusal, and is accepted once Postgres is back (the matcher must survive)."""
    dsn = own_postgres.create_database("faults")
    await prepare_db(dsn)
    order = orders_pb2.OrderCommand(place_order=place(BTC, "a", 2, 5, 100, "c-1"))
    async with running_node(config(dsn, pg_timeout=1.0, shutdown_grace=1.0)) as node:
        channel, stub = gateway(node.port)
        async with channel:
            await _until_acked(
                stub, orders_pb2.OrderCommand(place_order=place(BTC, "a", 2, 5, 101)), 5
            )
            await asyncio.to_thread(own_postgres.stop, "immediate")
            during = await _answer(stub, order)
            with pytest.raises(grpc.aio.AioRpcError) as lookup:  # a read: UNAVAILABLE too
                await stub.GetOrder(
                    gateway_pb2.GetOrderRequest(symbol=BTC, account="a", client_order_id="x"),
                    timeout=15.0,
                )
            await asyncio.to_thread(own_postgres.start)
            after = await _until_acked(stub, order, 15)
    assert lookup.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "database unavailable" in (lookup.value.details() or "")
    assert during.WhichOneof("result") == "error" and during.error.retryable
    assert after.report.status == 1 and not after.report.replayed
    check_durable_record(dsn, [after.report.order_id])


async def test_a_symbol_reload_failing_on_a_dead_database_is_retried(
    own_postgres: PostgresServer,
) -> None:
    """After a failed commit the touched symbol reloads in the background; a reload attempt
    that fails because Postgres is still down must be retried, not abandoned."""
    dsn = own_postgres.create_database("faults")
    await prepare_db(dsn)
    order = orders_pb2.OrderCommand(place_order=place(BTC, "a", 2, 5, 100))  # no lookup
    async with running_node(config(dsn, pg_timeout=1.0, shutdown_grace=1.0)) as node:
        channel, stub = gateway(node.port)
        async with channel:
            await _until_acked(stub, order, 5)
            await asyncio.to_thread(own_postgres.stop, "immediate")
            failed = await _answer(stub, order)  # its commit fails: BTC starts reloading
            await asyncio.sleep(2.0)  # the outage goes on past the pool's 1 s connect wait
            await asyncio.to_thread(own_postgres.start)
            after = await _until_acked(stub, order, 15)
    assert failed.WhichOneof("result") == "error" and failed.error.retryable
    assert after.report.seq == 2
    check_durable_record(dsn, [after.report.order_id])


async def _until_not_owner(stub: Stub, flow: OrderFlow, log: ClientLog, events: list[int]) -> None:
    """Batches of one symbol, no retries, until the shard says it is not the owner (bounded).
    ``events`` gets 0 per acknowledged batch, else the batch's error reason."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        commands = flow.batch(5)
        results = await submit(stub, commands)
        log.record(commands, results)
        reasons = {r.error.reason if r.WhichOneof("result") == "error" else 0 for r in results}
        assert len(reasons) == 1, f"one batch, one fate: {reasons}"
        events.append(reasons.pop())
        if events[-1] == REASON_NOT_OWNER:
            return
    raise AssertionError("the fenced shard never answered NOT_OWNER")


async def test_a_second_owner_fences_the_first_across_processes(db: str, shards: Shards) -> None:
    first = await shards.start(db, shard_id="shard-a")
    btc_log, eth_log, events = ClientLog(), ClientLog(), list[int]()
    btc_flow = OrderFlow(0, 5, PLACEMENTS_ONLY, symbols=(BTC,))
    eth_flow = OrderFlow(1, 5, PLACEMENTS_ONLY, symbols=(ETH,))
    stop = asyncio.Event()
    channel, stub = gateway(first.port)
    async with channel:
        btc = asyncio.create_task(_until_not_owner(stub, btc_flow, btc_log, events))
        eth = asyncio.create_task(persistent_client(stub, eth_flow, eth_log, stop, size=5,
                                                    seconds=40))  # fmt: skip
        await wait_until(lambda: min(len(btc_log.acked), len(eth_log.acked)) > 50, 15, "load")
        second = await shards.start(db, symbols=(BTC,), shard_id="shard-b")
        channel_b, stub_b = gateway(second.port)
        async with channel_b:
            claimed = await served_book(stub_b, BTC, BOOK_DEPTH)  # as loaded after its claim
            await asyncio.wait_for(btc, 25)
            eth_acked = len(eth_log.acked)
            await wait_until(lambda: len(eth_log.acked) > eth_acked + 50, 15, "ETH on the first")
            stop.set()
            await asyncio.wait_for(eth, 20)
            on_second = ClientLog()
            await resubmit(stub_b, OrderFlow(2, 5, PLACEMENTS_ONLY, symbols=(BTC,)).batch(5),
                           on_second)  # fmt: skip
        with pytest.raises(grpc.aio.AioRpcError) as lost:
            await served_book(stub, BTC, BOOK_DEPTH)
    assert lost.value.code() == grpc.StatusCode.UNAVAILABLE
    # The BTC client: acks, then the fenced commit (retryable), then NOT_OWNER (retryable).
    first_error = next(i for i, e in enumerate(events) if e)
    assert first_error > 0 and set(events[:first_error]) == {0}, events
    tail = events[first_error:]
    assert tail[0] == REASON_OUTCOME_UNKNOWN and tail[-1] == REASON_NOT_OWNER, tail
    assert set(tail) == {REASON_OUTCOME_UNKNOWN, REASON_NOT_OWNER}, tail
    assert tail == sorted(tail, reverse=True), f"served BTC again after NOT_OWNER: {tail}"
    assert all(e.retryable for _, e in btc_log.refused)
    # ETH kept trading on the first shard.
    assert not eth_log.unanswered and all(e.retryable for _, e in eth_log.refused)
    assert not any(e.reason == REASON_NOT_OWNER for _, e in eth_log.refused)
    # The durable record: nothing with the stale epoch after the claim.
    with psycopg.connect(db) as conn:
        owners = {
            s: (e, o)
            for s, e, o in conn.execute("SELECT symbol, epoch, shard_id FROM symbol_owner")
        }
        btc_rows = conn.execute(
            "SELECT seq, epoch FROM journal WHERE symbol = %s ORDER BY seq", (BTC,)
        ).fetchall()
        (eth_epochs,) = conn.execute(
            "SELECT array_agg(DISTINCT epoch) FROM journal WHERE symbol = %s", (ETH,)
        ).fetchone() or ([],)
    new_epoch = owners[BTC][0]
    assert owners == {BTC: (new_epoch, "shard-b"), ETH: (1, "shard-a")} and new_epoch > 1
    assert [s for s, e in btc_rows if s > claimed.seq and e != new_epoch] == []
    assert [s for s, e in btc_rows if s <= claimed.seq and e == new_epoch] == []
    assert [r.report.seq for _, r in on_second.acked] == list(
        range(claimed.seq + 1, claimed.seq + 6)
    )
    assert eth_epochs == [1]
    durable = durable_placements(db)
    assert not [c for c, _ in btc_log.refused if key_of(c) in durable], "a fenced order committed"
    log = merged([btc_log, eth_log, on_second])
    check_acks_match_journal(db, log)
    check_durable_record(db, log.acked_order_ids())
