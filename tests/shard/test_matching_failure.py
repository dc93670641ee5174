"""A matching bug (an exception part-way through a batch) fails that batch, not the shard.

The batch is never written; the batches ahead of it commit; when it reaches the head of
the commit order it fails like a failed commit: its commands are answered OUTCOME_UNKNOWN,
its placements are forgotten (a retry is placed afresh, never replayed), and its symbols'
books reload from what is durable. Cancels owed to a gone client that it carried are owed
again, also when running them was what raised. The matcher goes on serving.

Pipelines over a scripted writer (tests/shard/test_custody_races.py's Shard), whose admission
is the interpreted copy of shard.admission that these tests patch (tests/interpreted.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from persistence.rows import BatchRows
from shard import recording
from shard.admission import Outcome
from shard.engine import Command, Level, MassCancel, MatchingEngine, Report, Side, SymbolSpec
from shard.errors import REASON_OUTCOME_UNKNOWN, CommandFailure
from shard.ownership import SymbolState
from tests.interpreted import interpreted
from tests.shard.test_custody_races import Shard
from tests.shard.test_owed_cancels import (
    MASS_CANCEL,
    bids,
    commits_the_owed_cancel_alone,
    committed_resting_maker,
    maker,
)
from tests.shard.test_pipeline import SYMBOL, order, until

POISON = "boom"  # the account whose command the buggy matcher raises on
admission_module = interpreted("shard.admission")


def patchable_shard() -> Shard:
    return Shard(admission=admission_module.Admission)


def buggy_matcher(shard: Shard, monkeypatch: pytest.MonkeyPatch) -> None:
    """Matching raises at a command of account POISON, after the commands before it ran."""
    admit_all = shard.admission.admit_all

    def admit(
        commands: Sequence[Command],
        rows: BatchRows,
        touched: set[str],
        deadlines: Sequence[int] | None,
        now: int,
    ) -> list[Outcome]:
        for i, cmd in enumerate(commands):
            if getattr(cmd, "account", "") == POISON:
                admit_all(commands[:i], rows, touched, deadlines and deadlines[:i], now)
                raise RuntimeError("a matching bug")
        return admit_all(commands, rows, touched, deadlines, now)

    monkeypatch.setattr(shard.admission, "admit_all", admit)


def durable_book(shard: Shard) -> tuple[list[Level], list[Level]]:
    engine = MatchingEngine()
    engine.add_symbol(SymbolSpec(SYMBOL, 1))
    for command in shard.durable:
        engine.execute(command)
    return engine.book(SYMBOL).depth(Side.BUY, 10), engine.book(SYMBOL).depth(Side.SELL, 10)


def book(shard: Shard) -> tuple[list[Level], list[Level]]:
    return bids(shard), shard.engine.book(SYMBOL).depth(Side.SELL, 10)


async def commit_next(shard: Shard, command: Command) -> Outcome:
    n = len(shard.writer.started)
    placed = asyncio.ensure_future(shard.pipeline.submit([command]))
    await until(lambda: len(shard.writer.started) == n + 1)
    shard.writer.started[n].release.set_result(None)
    (outcome,) = await placed
    shard.durable.append(command)
    return outcome


async def test_a_batch_whose_matching_raises_fails_alone_and_its_book_reloads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shard = patchable_shard()
    shard.reloads_may_finish.set()
    await committed_resting_maker(shard)
    buggy_matcher(shard, monkeypatch)
    ahead = asyncio.ensure_future(shard.pipeline.submit([order("a")]))
    await until(lambda: len(shard.writer.started) == 2)  # in flight, not yet committed
    rests = maker("b1", 95)
    failing = asyncio.ensure_future(
        shard.pipeline.submit([rests, maker("b2", 96)._replace(account=POISON)])
    )
    await until(lambda: (95, 1) in [(lv.price, lv.quantity) for lv in bids(shard)])
    assert not failing.done()  # answered only once the batch ahead has committed

    shard.durable.append(order("a"))  # as Postgres: durable once its commit is released
    shard.writer.started[1].release.set_result(None)
    (placed,) = await ahead
    assert isinstance(placed, Report)
    outcomes = await asyncio.wait_for(failing, 5)  # a matcher ended by the bug never answers
    assert [type(o) for o in outcomes] == [CommandFailure, CommandFailure]
    assert {o.reason for o in outcomes if isinstance(o, CommandFailure)} == {REASON_OUTCOME_UNKNOWN}
    assert len(shard.writer.started) == 2  # the failed batch was never written
    await until(lambda: shard.reloaded == [1])
    assert book(shard) == durable_book(shard)  # b1's uncommitted effect is gone

    retried = await commit_next(shard, rests)  # forgotten: placed afresh, not a replay
    assert isinstance(retried, Report) and retried.order_id
    assert book(shard) == durable_book(shard)
    await shard.pipeline.stop(timeout=1.0)


async def test_a_cancel_owed_to_a_gone_client_in_a_failed_batch_is_owed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shard = patchable_shard()
    await committed_resting_maker(shard)
    buggy_matcher(shard, monkeypatch)
    ahead = asyncio.ensure_future(shard.pipeline.submit([order("a")]))
    await until(lambda: len(shard.writer.started) == 2)
    cancelling = asyncio.ensure_future(
        shard.pipeline.cancel_for_gone_client([MassCancel(SYMBOL, "mm")])
    )
    failing = asyncio.ensure_future(shard.pipeline.submit([order("x")._replace(account=POISON)]))
    # Both in the one failing batch: the cancel ran (mm's bid at 90 is gone), then it raised.
    await until(lambda: [lv.price for lv in bids(shard)] == [100])
    assert not failing.done()
    shard.durable.append(order("a"))
    shard.writer.started[1].release.set_result(None)
    await ahead
    await asyncio.wait_for(cancelling, 5)
    await asyncio.wait_for(failing, 5)
    assert SYMBOL in shard.pipeline.owed
    shard.reloads_may_finish.set()  # the book comes back with mm's order; then the cancel
    await until(lambda: len(shard.writer.started) == 3)
    batch = shard.writer.started[2]
    assert [(j.kind, j.account) for j in batch.rows.journal] == [(MASS_CANCEL, "mm")]
    batch.release.set_result(None)
    await until(lambda: batch in shard.writer.committed)
    assert [lv.price for lv in bids(shard)] == [100]  # only "a" rests; mm's order is gone
    await shard.pipeline.stop(timeout=1.0)


async def test_owed_cancels_whose_run_raises_are_owed_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shard = patchable_shard()
    await committed_resting_maker(shard)
    admit_owed = shard.admission.admit_owed
    raised: list[list[MassCancel]] = []

    def buggy_once(cancels: list[MassCancel], rows: BatchRows, touched: set[str]) -> list[Outcome]:
        if not raised:
            raised.append(cancels)
            raise RuntimeError("a matching bug")
        return admit_owed(cancels, rows, touched)

    monkeypatch.setattr(shard.admission, "admit_owed", buggy_once)
    shard.pipeline.owe_cancels(SYMBOL, ["mm"])
    await until(lambda: bool(raised))
    await until(lambda: shard.state() is SymbolState.RECOVERING)  # its book is suspect
    assert SYMBOL in shard.pipeline.owed
    shard.reloads_may_finish.set()
    await commits_the_owed_cancel_alone(shard, 2)


async def test_a_placement_whose_recording_raised_is_not_replayed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shard = patchable_shard()
    shard.reloads_may_finish.set()
    record = recording.record

    def buggy_record(cmd: Command, report: Report, epoch: int, rows: BatchRows) -> None:
        if getattr(cmd, "client_order_id", "") == "x1":
            raise RuntimeError("a recording bug")
        record(cmd, report, epoch, rows)

    monkeypatch.setattr(admission_module, "record", buggy_record)
    placing = order("x1")
    (failed,) = await asyncio.wait_for(shard.pipeline.submit([placing]), 5)
    assert isinstance(failed, CommandFailure) and failed.reason == REASON_OUTCOME_UNKNOWN
    await until(lambda: shard.reloaded == [1])
    monkeypatch.setattr(admission_module, "record", record)
    retried = await commit_next(shard, placing)  # placed afresh, not a replay of nothing
    assert isinstance(retried, Report) and retried.order_id
    await shard.pipeline.stop(timeout=1.0)
