"""Custody of a symbol when a failed commit, its reload and a move overlap (no database).

Each test drives the pipeline with a scripted writer into one interleaving that once left
a symbol served from a book holding rolled-back effects, released a newer ownership, or let
a move proceed before the batches ahead of it had committed."""

from __future__ import annotations

import asyncio

from persistence.claims import Claimed
from persistence.errors import FencedError, PersistenceError
from shard.admission import Admission
from shard.custody import SymbolCustody
from shard.engine import Command, MatchingEngine, SymbolSpec
from shard.errors import CommandFailure
from shard.idempotency import IdempotencyIndex
from shard.ownership import Ownership, SymbolState
from shard.pipeline import BatchCaps, Pipeline
from shard.service import cancel_on_disconnect
from shard.streams import StreamSession
from tests.shard.support import all_new
from tests.shard.test_pipeline import SYMBOL, ScriptedWriter, order, until


class Shard:
    """A pipeline over one symbol at epoch 1; reloads wait for ``reloads_may_finish``."""

    def __init__(
        self,
        caps: BatchCaps | None = None,
        failing_lookups: int = 0,
        admission: type[Admission] = Admission,
    ) -> None:
        self.engine, self.ownership = MatchingEngine(), Ownership()
        self.engine.add_symbol(SymbolSpec(SYMBOL, 1))
        self.ownership.serve(SYMBOL, 1)
        self.lookups = 0
        self.failing_lookups = failing_lookups  # lookups after the first that fail
        self.reloads_may_finish = asyncio.Event()
        self.reloaded: list[int] = []
        self.durable: list[Command] = []  # what Postgres holds: replayed by a reload
        self.writer = ScriptedWriter()
        self.admission = admission(self.engine, self.ownership, IdempotencyIndex(), self._claim)
        self.pipeline = Pipeline(
            self.engine,
            self.ownership,
            self.admission,
            self.writer.start,
            self._reload,
            caps or BatchCaps(),
        )
        self.custody = SymbolCustody(None, self.engine, self.ownership, self.pipeline, "a")  # type: ignore[arg-type]
        self.pipeline.start()

    async def _claim(self, wanted: object) -> Claimed:
        self.lookups += 1
        if 1 < self.lookups <= 1 + self.failing_lookups:
            raise PersistenceError("client order id claim: pool timeout")
        return await all_new(wanted)

    async def _reload(self, symbol: str) -> None:
        """As the node's reload: the book rebuilt from ``durable`` (what Postgres holds)."""
        owned = self.ownership.get(symbol)
        await self.reloads_may_finish.wait()
        if owned is None or self.ownership.get(symbol) is not owned:
            return
        if owned.state is SymbolState.RECOVERING:
            self.engine.remove_symbol(symbol)
            self.engine.add_symbol(SymbolSpec(symbol, 1))
            for command in self.durable:
                self.engine.execute(command)
            self.ownership.serve(symbol, owned.epoch)
            self.reloaded.append(owned.epoch)

    def state(self) -> SymbolState | None:
        owned = self.ownership.get(SYMBOL)
        return None if owned is None else owned.state


async def test_a_rolled_back_move_does_not_serve_a_symbol_still_recovering() -> None:
    shard = Shard()
    first = asyncio.ensure_future(shard.pipeline.submit([order("a")]))
    await until(lambda: len(shard.writer.started) == 1)
    shard.writer.started[0].release.set_result(PersistenceError("connection lost"))
    await first
    assert shard.state() is SymbolState.RECOVERING  # its book still holds order "a"

    await shard.custody.quiesce(SYMBOL)  # a planned move begins ...
    shard.custody.resume(SYMBOL)  # ... and is rolled back before the reload has finished
    assert shard.state() is SymbolState.RECOVERING
    refused = await shard.pipeline.submit([order("b")])
    assert [type(o).__name__ for o in refused] == ["CommandFailure"]

    shard.reloads_may_finish.set()
    await until(lambda: shard.state() is SymbolState.SERVING)
    placed = asyncio.ensure_future(shard.pipeline.submit([order("c")]))
    await until(lambda: len(shard.writer.started) == 2)
    assert [j.seq for j in shard.writer.started[1].rows.journal] == [1]  # no gap
    shard.writer.started[1].release.set_result(None)
    await placed
    await shard.pipeline.stop(timeout=1.0)


async def test_a_move_of_a_serving_symbol_pauses_and_resumes_it() -> None:
    shard = Shard()
    await shard.custody.quiesce(SYMBOL)
    assert shard.state() is SymbolState.MOVING
    shard.custody.resume(SYMBOL)
    assert shard.state() is SymbolState.SERVING
    await shard.pipeline.stop(timeout=1.0)


async def test_a_barrier_waits_for_earlier_batches_even_when_a_lookup_fails() -> None:
    shard = Shard(failing_lookups=1)
    first = asyncio.ensure_future(shard.pipeline.submit([order("a")]))
    await until(lambda: len(shard.writer.started) == 1)  # matched, not committed
    refused = asyncio.ensure_future(shard.pipeline.submit([order("b")]))  # lookup fails
    barrier = asyncio.ensure_future(shard.pipeline.barrier())
    [failure] = await refused
    assert type(failure).__name__ == "CommandFailure"
    await asyncio.sleep(0.05)
    assert not barrier.done()  # batch 1 has not committed yet
    shard.writer.started[0].release.set_result(None)
    await asyncio.wait_for(barrier, 5)
    assert first.done() and shard.writer.committed == shard.writer.started[:1]
    await shard.pipeline.stop(timeout=1.0)


async def test_a_fence_on_an_old_epoch_reloads_the_newer_ownership_instead_of_dropping_it() -> None:
    shard = Shard()
    first = asyncio.ensure_future(shard.pipeline.submit([order("a")]))  # written at epoch 1
    await until(lambda: len(shard.writer.started) == 1)
    shard.ownership.serve(SYMBOL, 2)  # taken again at epoch 2 meanwhile (a fresh book)
    shard.writer.started[0].release.set_result(FencedError({SYMBOL: (1, 2)}))
    await first
    assert shard.state() is SymbolState.RECOVERING and SYMBOL in shard.engine.symbols()
    shard.reloads_may_finish.set()
    await until(lambda: shard.reloaded == [2])
    assert shard.state() is SymbolState.SERVING
    await shard.pipeline.stop(timeout=1.0)


async def test_a_fence_on_the_held_epoch_drops_the_symbol() -> None:
    shard = Shard()
    first = asyncio.ensure_future(shard.pipeline.submit([order("a")]))
    await until(lambda: len(shard.writer.started) == 1)
    shard.writer.started[0].release.set_result(FencedError({SYMBOL: (1, 2)}))
    await first
    assert shard.state() is None and SYMBOL not in shard.engine.symbols()
    await shard.pipeline.stop(timeout=1.0)


async def test_a_batch_committing_after_a_drop_does_not_bring_its_book_back() -> None:
    shard = Shard()
    first = asyncio.ensure_future(shard.pipeline.submit([order("a")]))
    await until(lambda: len(shard.writer.started) == 1)
    shard.custody.drop(SYMBOL, "b")  # a forced failover: someone else's now
    shard.writer.started[0].release.set_result(None)
    await first
    assert SYMBOL not in shard.pipeline.committed_books
    await shard.pipeline.stop(timeout=1.0)


async def test_reload_leaves_a_symbol_dropped_or_taken_anew_meanwhile() -> None:
    """``SymbolCustody.reload`` acts only on the RECOVERING ownership it was started for
    (here it would need a database to take the symbol: reaching that step fails the test)."""
    shard = Shard()
    await shard.custody.reload(SYMBOL, 1)  # serving, not recovering: nothing to do
    shard.ownership.mark_recovering(SYMBOL)
    await shard.custody.reload(SYMBOL, 0)  # an older epoch's reload: nothing to do
    shard.custody.drop(SYMBOL)
    await shard.custody.reload(SYMBOL, 1)  # dropped: nothing to do
    assert shard.state() is None
    await shard.pipeline.stop(timeout=1.0)


async def test_cancel_on_disconnect_is_taken_past_a_full_inbox() -> None:
    shard = Shard(BatchCaps(max_pending=1, max_inflight_batches=2))
    session = StreamSession(4, 1.0)
    session.cancel_on_disconnect.update({"mm-1", "mm-2"})  # two mass cancels > max_pending
    done = asyncio.ensure_future(cancel_on_disconnect(shard.pipeline, session))
    await until(lambda: len(shard.writer.started) == 1)
    rows = shard.writer.started[0].rows
    assert sorted(j.account for j in rows.journal) == ["mm-1", "mm-2"]
    shard.writer.started[0].release.set_result(None)
    await done
    await shard.pipeline.stop(timeout=1.0)


async def test_cancel_on_disconnect_during_shutdown_is_logged_not_raised() -> None:
    """Raised, it would end the stream's clean-up (and its status) with an internal error."""
    shard = Shard()
    await shard.pipeline.stop(timeout=1.0)  # closing: every submit is refused
    session = StreamSession(4, 1.0)
    session.cancel_on_disconnect.add("mm-1")
    await cancel_on_disconnect(shard.pipeline, session)
    assert shard.writer.started == []


async def test_stop_answers_a_batch_held_in_its_client_order_id_lookup() -> None:
    shard = Shard()
    stuck = asyncio.Event()

    async def claim(wanted: object) -> Claimed:
        await stuck.wait()  # a database that never answers
        return await all_new(wanted)

    shard.pipeline._admission._claim = claim  # type: ignore[method-assign]
    placed = asyncio.ensure_future(shard.pipeline.submit([order("a")]))
    await asyncio.sleep(0.01)  # the matcher holds the batch in its lookup
    await shard.pipeline.stop(timeout=0.2)
    [outcome] = await asyncio.wait_for(placed, 2)
    assert isinstance(outcome, CommandFailure) and outcome.message == "shutting down"


async def test_a_large_cancel_on_disconnect_is_matched_in_capped_batches() -> None:
    shard = Shard(BatchCaps(max_commands=1_500))
    session = StreamSession(4, 1.0)
    session.cancel_on_disconnect.update(f"mm-{i}" for i in range(2_500))
    done = asyncio.ensure_future(cancel_on_disconnect(shard.pipeline, session))
    await until(lambda: sum(len(c.rows.journal) for c in shard.writer.started) == 2_500)
    assert max(len(c.rows.journal) for c in shard.writer.started) <= 1_500
    for commit in shard.writer.started:
        commit.release.set_result(None)
    await asyncio.wait_for(done, 5)
    await shard.pipeline.stop(timeout=1.0)


async def test_a_barrier_passes_an_inbox_filled_past_its_cap_by_protective_commands() -> None:
    shard = Shard(BatchCaps(max_pending=1, max_inflight_batches=2))
    session = StreamSession(4, 1.0)
    session.cancel_on_disconnect.update({"mm-1", "mm-2"})
    placed = []
    for n, cloid in enumerate("ab", 1):  # one batch each: both batch slots taken
        placed.append(asyncio.ensure_future(shard.pipeline.submit([order(cloid)])))
        await until(lambda n=n: len(shard.writer.started) == n)
    cancels = asyncio.ensure_future(cancel_on_disconnect(shard.pipeline, session))
    await until(lambda: shard.pipeline._inbox_commands == 2)  # past max_pending: protective
    barrier = asyncio.ensure_future(shard.pipeline.barrier())
    await asyncio.sleep(0.01)
    assert not barrier.done()  # waiting its turn, not refused
    for commit in shard.writer.started:
        commit.release.set_result(None)
    await until(lambda: len(shard.writer.started) == 3)
    shard.writer.started[2].release.set_result(None)
    await asyncio.wait_for(asyncio.gather(*placed, cancels, barrier), 5)
    await shard.pipeline.stop(timeout=1.0)
