"""Cancel-on-disconnect where the symbol's book is away (reloading after a failed commit,
or moving) or where the cancel fails with its batch: the cancel is owed, and runs first in
the first batch matched once the symbol serves here again. So it takes every order the
client had placed before the disconnect, and none it places after.

Pipelines over a scripted writer (tests/shard/test_custody_races.py's Shard)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from persistence.claims import Claimed
from persistence.errors import PersistenceError
from shard import custody
from shard.engine import Level, PlaceOrder, Report, Side, SymbolSpec
from shard.ownership import SymbolState
from shard.service import cancel_on_disconnect
from shard.streams import StreamSession
from tests.shard.support import all_new
from tests.shard.test_custody_races import Shard
from tests.shard.test_pipeline import SYMBOL, order, until

PLACE, MASS_CANCEL = 1, 4  # journal kinds


def maker(cloid: str, price: int) -> PlaceOrder:
    return PlaceOrder(SYMBOL, "mm", Side.BUY, 1, price, client_order_id=cloid)


def gone(*accounts: str) -> StreamSession:
    session = StreamSession(4, 1.0)
    session.cancel_on_disconnect.update(accounts)
    return session


def bids(shard: Shard) -> list[Level]:
    return shard.engine.book(SYMBOL).depth(Side.BUY, 10)


async def committed_resting_maker(shard: Shard) -> None:
    resting = maker("m1", 90)
    placed = asyncio.ensure_future(shard.pipeline.submit([resting]))
    await until(lambda: len(shard.writer.started) == 1)
    shard.writer.started[0].release.set_result(None)
    await placed
    shard.durable.append(resting)


async def fail_next_batch(shard: Shard) -> None:
    """Another client's batch fails to commit: the symbol reloads (until allowed)."""
    n = len(shard.writer.started)
    failing = asyncio.ensure_future(shard.pipeline.submit([order("a")]))
    await until(lambda: len(shard.writer.started) == n + 1)
    shard.writer.started[n].release.set_result(PersistenceError("connection lost"))
    await failing
    assert shard.state() is SymbolState.RECOVERING


async def commits_the_owed_cancel_alone(shard: Shard, batches: int) -> None:
    """The ``batches``-th batch holds mm's owed cancel and nothing else; it commits, and
    mm's resting order is gone. Then the pipeline stops."""
    await until(lambda: len(shard.writer.started) == batches)
    batch = shard.writer.started[batches - 1]
    assert [(j.kind, j.account) for j in batch.rows.journal] == [(MASS_CANCEL, "mm")]
    batch.release.set_result(None)
    await until(lambda: batch in shard.writer.committed)
    assert bids(shard) == []
    await shard.pipeline.stop(timeout=1.0)


async def test_a_cancel_owed_on_a_reloading_symbol_runs_before_what_the_client_sends_next() -> None:
    shard = Shard()
    await committed_resting_maker(shard)
    await fail_next_batch(shard)

    await cancel_on_disconnect(shard.pipeline, gone("mm"))  # returns: the cancel is owed
    assert len(shard.writer.started) == 2

    # The client comes back and places again: its batch is held in its client order id
    # claim while the reload finishes, so the symbol serves when the batch is matched.
    claim_may_finish = asyncio.Event()

    async def slow_claim(wanted: object) -> Claimed:
        await claim_may_finish.wait()
        return await all_new(wanted)

    shard.pipeline._admission._claim = slow_claim  # type: ignore[method-assign]
    fresh = asyncio.ensure_future(shard.pipeline.submit([maker("m2", 95)]))
    await until(lambda: shard.pipeline._forming)
    shard.reloads_may_finish.set()
    await until(lambda: shard.state() is SymbolState.SERVING)
    assert bids(shard) == [Level(90, 1, 1)]  # the reload brought m1 back
    claim_may_finish.set()

    await until(lambda: len(shard.writer.started) == 3)
    batch = shard.writer.started[2]
    assert [(j.kind, j.account) for j in batch.rows.journal] == [(MASS_CANCEL, "mm"), (PLACE, "mm")]
    batch.release.set_result(None)
    [placed] = await fresh
    assert isinstance(placed, Report) and placed.leaves_qty == 1
    assert bids(shard) == [Level(95, 1, 1)]  # m1 cancelled, m2 (sent after) kept
    await shard.pipeline.stop(timeout=1.0)


async def test_a_cancel_that_fails_with_its_batch_runs_once_the_symbol_is_reloaded() -> None:
    shard = Shard()
    await committed_resting_maker(shard)

    cancelling = asyncio.ensure_future(cancel_on_disconnect(shard.pipeline, gone("mm")))
    await until(lambda: len(shard.writer.started) == 2)
    shard.writer.started[1].release.set_result(PersistenceError("connection lost"))
    await cancelling
    assert shard.state() is SymbolState.RECOVERING

    shard.reloads_may_finish.set()
    await commits_the_owed_cancel_alone(shard, 3)  # by itself: nothing else arrives


async def test_a_cancel_on_a_moving_symbol_is_owed_until_the_move_is_rolled_back() -> None:
    shard = Shard()
    await committed_resting_maker(shard)
    await shard.custody.quiesce(SYMBOL)
    assert shard.state() is SymbolState.MOVING

    await cancel_on_disconnect(shard.pipeline, gone("mm"))
    await asyncio.sleep(0.05)
    assert len(shard.writer.started) == 1  # not run while the hand-over may go on
    shard.custody.resume(SYMBOL)  # rolled back: the symbol serves here again
    await commits_the_owed_cancel_alone(shard, 2)


async def test_a_failed_cancel_is_owed_even_if_its_caller_is_gone() -> None:
    """Owed in the step that fails it: the disconnect handler may be cancelled meanwhile
    (server shutdown), and a reload may end before any caller code runs again."""
    shard = Shard()
    await committed_resting_maker(shard)
    cancelling = asyncio.ensure_future(cancel_on_disconnect(shard.pipeline, gone("mm")))
    await until(lambda: len(shard.writer.started) == 2)
    shard.writer.started[1].release.set_result(PersistenceError("connection lost"))
    cancelling.cancel()
    await until(lambda: shard.state() is SymbolState.RECOVERING)
    assert SYMBOL in shard.pipeline.owed

    shard.reloads_may_finish.set()
    await commits_the_owed_cancel_alone(shard, 3)


async def test_a_cancel_owed_on_a_symbol_taken_away_is_dropped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    shard = Shard()
    await committed_resting_maker(shard)
    await fail_next_batch(shard)
    await cancel_on_disconnect(shard.pipeline, gone("mm"))

    shard.ownership.release(SYMBOL)  # failed over to another shard meanwhile
    with caplog.at_level(logging.WARNING, logger="shard.owed_cancels"):
        shard.reloads_may_finish.set()
        await until(lambda: "went to another shard" in caplog.text)
    assert not shard.pipeline.owed.symbols() and len(shard.writer.started) == 2
    await shard.pipeline.stop(timeout=1.0)


@pytest.mark.parametrize("rounds", [1, custody.QUIESCE_ROUNDS])
async def test_a_cancel_owed_while_a_hand_over_pauses_the_symbol_commits_before_it_ends(
    rounds: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also when the pause's last round is the one that took the cancel (``rounds`` 1)."""
    monkeypatch.setattr(custody, "QUIESCE_ROUNDS", rounds)
    shard = Shard()
    await committed_resting_maker(shard)
    in_flight = asyncio.ensure_future(shard.pipeline.submit([order("a")]))
    await until(lambda: len(shard.writer.started) == 2)
    quiesced = asyncio.ensure_future(shard.custody.quiesce(SYMBOL))
    await until(lambda: shard.state() is SymbolState.MOVING)

    await asyncio.wait_for(cancel_on_disconnect(shard.pipeline, gone("mm")), 1)  # owed
    shard.writer.started[1].release.set_result(None)
    await in_flight
    await until(lambda: len(shard.writer.started) == 3)
    batch = shard.writer.started[2]
    assert [(j.kind, j.account) for j in batch.rows.journal] == [(MASS_CANCEL, "mm")]
    await asyncio.sleep(0.05)
    assert not quiesced.done()  # the hand-over waits for the owed cancel to commit
    batch.release.set_result(None)
    await asyncio.wait_for(quiesced, 1)
    assert bids(shard) == [Level(100, 1, 1)]  # "a" (another account) rests; mm's is gone
    await shard.pipeline.stop(timeout=1.0)


async def test_a_cancel_owed_under_an_old_custody_never_runs_under_a_new_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Owed while the symbol moved away; it comes back later (a new epoch) holding an order
    the client placed after reconnecting elsewhere: that order is not cancelled."""
    shard = Shard()
    await committed_resting_maker(shard)
    await shard.custody.quiesce(SYMBOL)
    await cancel_on_disconnect(shard.pipeline, gone("mm"))
    await asyncio.sleep(0.01)  # the matcher looks: nothing due while the symbol moves
    shard.custody.drop(SYMBOL, "shard-b")  # handed over; nothing wakes the matcher
    shard.engine.add_symbol(SymbolSpec(SYMBOL, 1))  # taken back, with what shard-b holds
    shard.engine.execute(maker("m2", 95))
    shard.ownership.serve(SYMBOL, 3)
    with caplog.at_level(logging.WARNING, logger="shard.owed_cancels"):
        placed = asyncio.ensure_future(shard.pipeline.submit([order("x")]))
        await until(lambda: len(shard.writer.started) == 2)
    assert [(j.kind, j.account) for j in shard.writer.started[1].rows.journal] == [(PLACE, "acct")]
    assert "went to another shard" in caplog.text
    shard.writer.started[1].release.set_result(None)
    await placed
    assert bids(shard) == [Level(100, 1, 1), Level(95, 1, 1)]
    await shard.pipeline.stop(timeout=1.0)


async def test_a_hand_over_waits_for_a_reload_that_cancels_are_owed_on() -> None:
    """Handed over now, the reloading symbol would drop the cancels; the hand-over fails
    (retried by the assignment follower) and the reload runs them."""
    shard = Shard()
    await committed_resting_maker(shard)
    await fail_next_batch(shard)
    await cancel_on_disconnect(shard.pipeline, gone("mm"))

    with pytest.raises(PersistenceError, match="wait for its reload"):
        await shard.custody.quiesce(SYMBOL)
    assert SYMBOL in shard.pipeline.owed
    shard.reloads_may_finish.set()
    await commits_the_owed_cancel_alone(shard, 3)


async def test_a_cancel_failed_under_an_old_epoch_is_not_owed_under_the_new_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its batch hung while the symbol went away and came back: the failure must not owe
    the cancel under the new custody, whose book holds orders placed since."""
    shard = Shard()
    await committed_resting_maker(shard)
    cancelling = asyncio.ensure_future(cancel_on_disconnect(shard.pipeline, gone("mm")))
    await until(lambda: len(shard.writer.started) == 2)
    shard.ownership.serve(SYMBOL, 2)  # re-taken meanwhile under a newer epoch
    with caplog.at_level(logging.WARNING, logger="shard.owed_cancels"):
        shard.writer.started[1].release.set_result(PersistenceError("connection lost"))
        await cancelling
    assert SYMBOL not in shard.pipeline.owed
    assert "not this shard's" in caplog.text
    await shard.pipeline.stop(timeout=1.0)


async def test_a_repeated_hand_over_pause_does_not_run_cancels_owed_since_the_first() -> None:
    """A retried hand-over (its etcd update may have landed): the new owner may already
    hold the symbol, so what was owed after the first pause waits (dropped with it)."""
    shard = Shard()
    await committed_resting_maker(shard)
    await shard.custody.quiesce(SYMBOL)
    await cancel_on_disconnect(shard.pipeline, gone("mm"))
    await asyncio.wait_for(shard.custody.quiesce(SYMBOL), 1)
    assert SYMBOL in shard.pipeline.owed and len(shard.writer.started) == 1
    await shard.pipeline.stop(timeout=1.0)
