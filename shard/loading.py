"""Taking a symbol: fence in Postgres first, then load its book, then serve (DESIGN section 4)."""

from __future__ import annotations

import logging
import time

from psycopg_pool import AsyncConnectionPool

from persistence.errors import translated
from persistence.fencing import claim_epoch, claim_next_epoch, ending_stale_holders
from persistence.loader import load_symbol
from persistence.rows import SymbolSnapshot
from shard.engine import MatchingEngine, OpenOrder, Side, StpMode, SymbolSpec, SymbolStatus

log = logging.getLogger(__name__)


async def take_symbol(
    pool: AsyncConnectionPool,
    engine: MatchingEngine,
    symbol: str,
    shard_id: str,
    epoch: int | None = None,
) -> int:
    """Claim ``symbol`` (next epoch, or the given one), load its book into ``engine``.

    Returns the epoch. Raises persistence.errors.FencedError if a newer owner exists.
    """
    started = time.perf_counter()
    with translated(f"taking {symbol}"):
        snapshot = await _claim_and_load(pool, symbol, shard_id, epoch)
    install(engine, snapshot)
    log.info(
        "took the symbol: %d resting orders loaded in %.3fs",
        len(snapshot.resting),
        time.perf_counter() - started,
        extra={"symbol": symbol, "epoch": snapshot.epoch, "seq": snapshot.last_seq},
    )
    return snapshot.epoch


async def _claim_and_load(
    pool: AsyncConnectionPool, symbol: str, shard_id: str, epoch: int | None
) -> SymbolSnapshot:
    async with pool.connection() as conn:
        async with ending_stale_holders(pool, conn):
            if epoch is None:
                epoch = await claim_next_epoch(conn, symbol, shard_id)
            else:
                await claim_epoch(conn, symbol, epoch, shard_id)
        return await load_symbol(conn, symbol, epoch)


def install(engine: MatchingEngine, snapshot: SymbolSnapshot) -> None:
    """Replace whatever the engine held for the symbol with the durable snapshot."""
    row = snapshot.symbol
    spec = SymbolSpec(
        row.symbol,
        row.symbol_id,
        row.tick_size,
        row.lot_size,
        row.min_quantity,
        row.max_quantity,
        SymbolStatus(row.status),
    )
    engine.remove_symbol(row.symbol)
    resting = (
        OpenOrder(
            r.order_id,
            r.account,
            r.client_order_id,
            Side(r.side),
            r.price,
            r.quantity,
            r.cum_qty,
            r.leaves_qty,
            r.priority,
            StpMode(r.stp),
            r.post_only,
        )
        for r in snapshot.resting
    )
    engine.add_symbol(spec, snapshot.last_seq, resting)
