"""Taking, pausing, handing over and dropping symbols on this shard.

Taking always fences first (raise the epoch in Postgres), then loads, then serves (DESIGN
section 4). Handing over pauses admission (SYMBOL_MOVING, which routers retry at the new owner)
and waits until every batch already matched has committed, so a planned move loses nothing and
fails nothing. The market-data publisher (if any) starts a new chain for every symbol taken,
and a handed-over symbol's committed data is published before the new owner can take it.
"""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from shard.engine import MatchingEngine
from shard.loading import take_symbol
from shard.ownership import Ownership
from shard.pipeline import Pipeline
from shard.publisher import MarketDataPublisher


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

    async def take(self, symbol: str, epoch: int | None = None) -> int:
        """Fence, load, serve; returns the epoch. FencedError if a newer owner exists."""
        epoch = await take_symbol(self._pool, self._engine, symbol, self.shard_id, epoch)
        self.ownership.serve(symbol, epoch)
        self._pipeline.committed_books[symbol] = self._pipeline.book_view(symbol)
        if self._market_data is not None:
            self._market_data.take(symbol)
        return epoch

    async def quiesce(self, symbol: str) -> None:
        """Stop admitting ``symbol`` and wait until what was admitted has committed."""
        self.ownership.mark_moving(symbol)
        await self._pipeline.barrier()
        if self._market_data is not None:  # bounded; skipped at once if Redis is failing
            await self._market_data.flush(symbol)

    def resume(self, symbol: str) -> None:
        owned = self.ownership.get(symbol)
        if owned is not None:
            self.ownership.serve(symbol, owned.epoch)

    def drop(self, symbol: str, new_owner: str = "") -> None:
        self._engine.remove_symbol(symbol)
        self.ownership.release(symbol, new_owner)
        self._pipeline.committed_books.pop(symbol, None)
        if self._market_data is not None:
            self._market_data.drop(symbol)
