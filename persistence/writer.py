"""The batch writer: one transaction per batch, COPY for bulk rows, fenced by epoch.

Nothing is acknowledged before ``commit`` returns. Inside the transaction the writer first
reads ``symbol_owner`` for every symbol the batch touches (FOR SHARE, so a concurrent claim
waits for this commit and then sees its rows) and aborts with FencedError on any mismatch.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg_pool import AsyncConnectionPool

from . import failpoints
from .errors import FencedError, PersistenceError
from .rows import BatchRows

log = logging.getLogger(__name__)

ORDER_COLUMNS = (
    "order_id, symbol, account, client_order_id, side, order_type, time_in_force, post_only,"
    " stp, price, quantity, cum_qty, leaves_qty, status, priority, created_seq, updated_seq"
)
UPDATE_COLUMNS = "order_id, status, price, quantity, cum_qty, leaves_qty, priority, updated_seq"
FILL_COLUMNS = (
    "symbol, seq, match_index, maker_order_id, taker_order_id, maker_account, taker_account,"
    " price, quantity"
)
JOURNAL_COLUMNS = (
    "symbol, seq, kind, account, client_order_id, order_id, side, order_type, time_in_force,"
    " post_only, stp, price, quantity, symbol_status, status, reject_code, cum_qty,"
    " leaves_qty, epoch"
)
_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS order_updates_stage ("
    " order_id bigint, status smallint, price bigint, quantity bigint, cum_qty bigint,"
    " leaves_qty bigint, priority bigint, updated_seq bigint) ON COMMIT DELETE ROWS"
)
# NULL in a staged column means "unchanged" (e.g. an order expired by STP: only its
# status and leaves are known to the recorder).
_APPLY_UPDATES = (
    "UPDATE orders o SET status = s.status, price = coalesce(s.price, o.price),"
    " quantity = coalesce(s.quantity, o.quantity), cum_qty = coalesce(s.cum_qty, o.cum_qty),"
    " leaves_qty = s.leaves_qty, priority = coalesce(s.priority, o.priority),"
    " updated_seq = s.updated_seq FROM order_updates_stage s WHERE o.order_id = s.order_id"
)


async def configure_connection(conn: psycopg.AsyncConnection) -> None:
    """Pool hook: durable commits and the per-connection staging table.

    Pooled connections stay in autocommit: work that must be atomic (a batch, a recovery
    snapshot) opens an explicit ``conn.transaction()``; single statements (an epoch claim,
    a lookup) commit by themselves, and nothing is left open when a connection goes back.
    """
    await conn.set_autocommit(True)
    await conn.execute("SET synchronous_commit = on")
    await conn.execute(_STAGE)


class BatchWriter:
    def __init__(self, pool: AsyncConnectionPool, timeout: float = 10.0) -> None:
        self._pool = pool
        self._timeout = timeout  # waiting for a pooled connection

    async def commit(self, batch: BatchRows) -> None:
        """Make ``batch`` durable or raise (FencedError, or PersistenceError if retriable)."""
        try:
            async with (
                self._pool.connection(timeout=self._timeout) as conn,
                conn.transaction(),
            ):
                await _check_fence(conn, batch.epochs)
                await _write_rows(conn, batch)
                failpoints.hit("before_commit")
            failpoints.hit("after_commit")
        except FencedError:
            raise
        except (psycopg.Error, OSError, TimeoutError) as exc:
            raise PersistenceError(f"batch commit failed: {exc}") from exc


async def _check_fence(conn: psycopg.AsyncConnection, epochs: dict[str, int]) -> None:
    if not epochs:
        return
    cur = await conn.execute(
        "SELECT symbol, epoch FROM symbol_owner WHERE symbol = ANY(%s) FOR SHARE",
        (list(epochs),),
    )
    current: dict[str, int] = dict(await cur.fetchall())
    stale = {
        symbol: (ours, current.get(symbol, -1))
        for symbol, ours in epochs.items()
        if current.get(symbol) != ours
    }
    if stale:
        raise FencedError(stale)


async def _write_rows(conn: psycopg.AsyncConnection, batch: BatchRows) -> None:
    async with conn.cursor() as cur:
        if batch.orders:
            await _copy(cur, f"COPY orders ({ORDER_COLUMNS}) FROM STDIN", batch.orders.values())
        if batch.updates:
            await _copy(
                cur,
                f"COPY order_updates_stage ({UPDATE_COLUMNS}) FROM STDIN",
                batch.updates.values(),
            )
            await cur.execute(_APPLY_UPDATES)
        if batch.fills:
            await _copy(cur, f"COPY fills ({FILL_COLUMNS}) FROM STDIN", batch.fills)
        if batch.journal:
            await _copy(cur, f"COPY journal ({JOURNAL_COLUMNS}) FROM STDIN", batch.journal)
        for symbol, status in batch.symbol_status.items():
            await cur.execute("UPDATE symbols SET status = %s WHERE symbol = %s", (status, symbol))


async def _copy(cur: psycopg.AsyncCursor[tuple[object, ...]], sql: str, rows: object) -> None:
    async with cur.copy(sql.encode()) as copy:
        for row in rows:  # type: ignore[attr-defined]
            await copy.write_row(row)
