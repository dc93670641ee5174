"""Taking, pausing, handing over and dropping symbols on this shard.

Taking always fences first (raise the epoch in Postgres), then loads, then serves (DESIGN
section 4). Handing over pauses admission (SYMBOL_MOVING, which routers retry at the new owner)
and waits until every batch already matched has committed, so a planned move loses nothing and
fails nothing. The market-data publisher (if any) starts a new chain for every symbol taken,
and a handed-over symbol's committed data is published before the new owner can take it.
"""

from __future__ import annotations

import asyncio
import logging

from psycopg_pool import AsyncConnectionPool

from persistence.errors import FencedError, PersistenceError
from shard.engine import MatchingEngine
from shard.loading import take_symbol
from shard.ownership import Ownership, SymbolState
from shard.pipeline import Pipeline
from shard.publisher import MarketDataPublisher

log = logging.getLogger(__name__)

# Barrier rounds a hand-over waits for cancels owed while it pauses a symbol: each round
# commits those owed before it; a client churn can owe more during every one.
QUIESCE_ROUNDS = 5
# Takes (fence and load) holding a pool connection together. A failover hands a shard many
# symbols at once, each its own task: uncapped they took every connection (each held for
# the load, or up to 3 s waiting on a frozen owner's batches), the writer's next batch
# timed out waiting for one, its commit failed, and the shard's own symbols went to reload
# too. Loading is the event loop's work, so more at once would not be faster.
TAKES_AT_ONCE = 2


class SymbolCustody:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        engine: MatchingEngine,
        ownership: Ownership,
        pipeline: Pipeline,
        shard_id: str,
        market_data: MarketDataPublisher | None = None,
    ) -> None:
        self._pool = pool
        self._engine = engine
        self.ownership = ownership
        self._pipeline = pipeline
        self.shard_id = shard_id
        self._market_data = market_data
        self._guards: dict[str, asyncio.Lock] = {}  # one per symbol ever held: bounded
        self._taking = asyncio.Semaphore(TAKES_AT_ONCE)

    def guard(self, symbol: str) -> asyncio.Lock:
        """Held by whoever changes ``symbol``'s custody across awaits (the assignment
        follower, a reload), so that neither acts on a state the other is replacing."""
        return self._guards.setdefault(symbol, asyncio.Lock())

    async def take(self, symbol: str, epoch: int | None = None) -> int:
        """Fence, load, serve; returns the epoch. FencedError if a newer owner exists."""
        async with self._taking:
            epoch = await take_symbol(self._pool, self._engine, symbol, self.shard_id, epoch)
        self.ownership.serve(symbol, epoch)
        self._pipeline.committed_books[symbol] = self._pipeline.book_view(symbol)
        if self._market_data is not None:
            self._market_data.take(symbol)
        return epoch

    async def reload(self, symbol: str, epoch: int) -> None:
        """After a failed commit: load ``symbol`` again under ``epoch``, unless it has been
        dropped or taken anew meanwhile. Fenced out: dropped. PersistenceError: retry."""
        async with self.guard(symbol):
            owned = self.ownership.get(symbol)
            if owned is None or owned.epoch != epoch or owned.state is not SymbolState.RECOVERING:
                return
            try:
                await self.take(symbol, epoch)
            except FencedError:
                self.drop(symbol)
                log.error("lost to a newer owner during recovery", extra={"symbol": symbol})

    async def quiesce(self, symbol: str) -> None:
        """Stop admitting ``symbol`` and wait until what was admitted has committed, and the
        cancels owed on it to gone clients (a bounded number of rounds: later ones wait
        for a rollback, or are dropped with the symbol). PersistenceError while cancels
        are owed on a symbol reloading: the hand-over must wait for the reload."""
        owned = self.ownership.get(symbol)
        first = owned is not None and owned.state is SymbolState.SERVING  # not a retry
        self.ownership.mark_moving(symbol)
        owed = self._pipeline.owed
        owed.handing_over(symbol, first)
        taken = owed.taken(symbol)
        try:
            for _ in range(QUIESCE_ROUNDS):
                taken = owed.taken(symbol)
                await self._pipeline.barrier()
                if symbol not in owed and owed.taken(symbol) == taken:
                    break
                now = self.ownership.get(symbol)
                if now is None or now.state is not SymbolState.MOVING or not first:
                    break
        finally:
            owed.handing_over(symbol, False)
        if owed.taken(symbol) != taken:  # the last round ran some: commit them first
            await self._pipeline.barrier()
        now = self.ownership.get(symbol)
        if now is not None and now.state is SymbolState.RECOVERING and symbol in owed:
            raise PersistenceError(f"cancels owed on {symbol} wait for its reload")
        if self._market_data is not None:  # bounded; skipped at once if Redis is failing
            await self._market_data.flush(symbol)

    def resume(self, symbol: str) -> None:
        """Serve again a symbol whose hand-over was rolled back (only one paused for it)."""
        owned = self.ownership.get(symbol)
        if owned is not None and owned.state is SymbolState.MOVING:
            self.ownership.serve(symbol, owned.epoch)
            self._pipeline.serves_again(symbol)

    def drop(self, symbol: str, new_owner: str = "") -> None:
        self._engine.remove_symbol(symbol)
        self.ownership.release(symbol, new_owner)
        self._pipeline.committed_books.pop(symbol, None)
        if self._market_data is not None:
            self._market_data.drop(symbol)
