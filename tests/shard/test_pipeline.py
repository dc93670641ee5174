"""The pipeline's ordering rules with a scripted writer (no database): commits in order,
a failed commit takes every later open transaction down with it, and a command that waited
past its deadline is never executed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from persistence.errors import PersistenceError
from persistence.rows import BatchRows
from shard.admission import Admission
from shard.engine import Command, MatchingEngine, PlaceOrder, SymbolSpec
from shard.errors import REASON_DEADLINE_EXCEEDED, REASON_OUTCOME_UNKNOWN, CommandFailure
from shard.idempotency import IdempotencyIndex
from shard.ownership import Ownership
from shard.pipeline import BatchCaps, Pipeline
from tests.shard.support import all_new

SYMBOL = "BTC-USDT"


class ScriptedCommit:
    """A batch's transaction that commits (or fails) only when the test says so."""

    def __init__(self, writer: ScriptedWriter, rows: BatchRows) -> None:
        self.rows, self.writer = rows, writer
        self.release: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        writer.started.append(self)

    async def commit(self) -> None:
        failure = await self.release
        if failure is not None:
            raise failure
        self.writer.committed.append(self)

    async def abort(self) -> None:
        self.writer.aborted.append(self)


class ScriptedWriter:
    def __init__(self) -> None:
        self.started: list[ScriptedCommit] = []
        self.committed: list[ScriptedCommit] = []
        self.aborted: list[ScriptedCommit] = []

    def start(self, rows: BatchRows) -> ScriptedCommit:
        return ScriptedCommit(self, rows)


def order(cloid: str) -> PlaceOrder:
    return PlaceOrder(SYMBOL, "acct", 1, 1, 100, client_order_id=cloid)


async def until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline
        await asyncio.sleep(0)


@pytest.fixture
async def setup() -> tuple[Pipeline, ScriptedWriter, IdempotencyIndex]:
    engine, ownership, index = MatchingEngine(), Ownership(), IdempotencyIndex()
    engine.add_symbol(SymbolSpec(SYMBOL, 1))
    ownership.serve(SYMBOL, 1)

    async def reload(symbol: str) -> None:
        ownership.serve(symbol, 1)

    writer = ScriptedWriter()
    admission = Admission(engine, ownership, index, all_new)
    pipeline = Pipeline(engine, ownership, admission, writer.start, reload)
    pipeline.start()
    return pipeline, writer, index


def submit(
    pipeline: Pipeline, commands: Sequence[Command], deadlines: Sequence[int] | None = None
) -> asyncio.Task[list[object]]:
    return asyncio.ensure_future(pipeline.submit(commands, 0, deadlines))  # type: ignore[arg-type]


async def test_a_failed_commit_rolls_back_the_next_open_transaction(setup) -> None:  # type: ignore[no-untyped-def]
    pipeline, writer, index = setup
    first, second = submit(pipeline, [order("a")]), None
    await until(lambda: len(writer.started) == 1)
    second = submit(pipeline, [order("b")])
    await until(lambda: len(writer.started) == 2)  # matched: its transaction is open too
    assert index.get(("acct", "b")) is not None
    writer.started[0].release.set_result(PersistenceError("disk on fire"))
    outcomes = [await first, await second]
    assert all(
        isinstance(o, CommandFailure) and o.reason == REASON_OUTCOME_UNKNOWN
        for batch in outcomes
        for o in batch
    ), outcomes
    assert writer.committed == [] and writer.aborted == writer.started  # both rolled back
    assert index.get(("acct", "a")) is None and index.get(("acct", "b")) is None
    await pipeline.stop(timeout=1.0)


async def test_batches_commit_and_answer_in_order(setup) -> None:  # type: ignore[no-untyped-def]
    pipeline, writer, _ = setup
    first = submit(pipeline, [order("a")])
    await until(lambda: len(writer.started) == 1)
    second = submit(pipeline, [order("b")])
    await until(lambda: len(writer.started) == 2)
    writer.started[1].release.set_result(None)  # the later one is ready first
    for _ in range(100):
        await asyncio.sleep(0)  # let everything runnable run
    assert not second.done() and writer.committed == []  # but waits for the earlier one
    writer.started[0].release.set_result(None)
    await first
    await second
    assert writer.committed == writer.started
    await pipeline.stop(timeout=1.0)


async def test_a_command_that_waited_past_its_deadline_is_not_executed(setup) -> None:  # type: ignore[no-untyped-def]
    pipeline, writer, _ = setup
    busy = []
    for n in range(1, BatchCaps.max_inflight_batches + 1):  # one batch each: every slot taken
        busy.append(submit(pipeline, [order(f"busy-{n}")]))
        await until(lambda n=n: len(writer.started) == n)
    deadline = time.time_ns() + 20_000_000  # 20 ms from now: still ahead when submitted
    late = submit(pipeline, [order("c")], [deadline])
    while time.time_ns() <= deadline:  # it waits in the inbox past its deadline
        await asyncio.sleep(0.005)
    for started in writer.started:
        started.release.set_result(None)
    await asyncio.gather(*busy)
    (outcome,) = await late
    assert isinstance(outcome, CommandFailure) and outcome.reason == REASON_DEADLINE_EXCEEDED
    assert pipeline._engine.book(SYMBOL).last_seq == len(busy)  # "c" took no sequence number
    await pipeline.stop(timeout=1.0)
