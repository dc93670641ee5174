"""Epoch claims: a new owner raises a symbol's epoch in Postgres before it loads the book.

With etcd (cluster issue) the epoch is the assignment's mod_revision, claimed with
``claim_epoch``; without it a shard takes the next epoch with ``claim_next_epoch``. Either
way the epoch only grows, and the previous owner's next commit is fenced.

A claim waits for the previous owner's open batch transactions, which hold the symbol's
``symbol_owner`` row FOR SHARE until they commit. Postgres ends an idle one after
``idle_in_transaction_session_timeout``, but not one frozen in the middle of a statement (a
SIGSTOPped owner inside a COPY: the session is "active", waiting for data): that one would
hold up the failover until the process ran again. So a claim that has waited
``STALE_HOLDER_GRACE`` ends the sessions blocking it (``ending_stale_holders``); their
transactions roll back, and nothing of them was acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import psycopg
from psycopg_pool import AsyncConnectionPool

from .errors import FencedError, UnknownSymbolError

log = logging.getLogger(__name__)

# Far above a healthy batch's hold on the row (one commit, well under a second); above the
# 2 s after which Postgres ends an idle one itself.
STALE_HOLDER_GRACE = 3.0


async def claim_epoch(
    conn: psycopg.AsyncConnection, symbol: str, epoch: int, shard_id: str
) -> None:
    """Raise ``symbol``'s epoch to ``epoch`` for ``shard_id``; FencedError if it is higher."""
    cur = await conn.execute(
        "INSERT INTO symbol_owner (symbol, epoch, shard_id) VALUES (%s, %s, %s)"
        " ON CONFLICT (symbol) DO UPDATE SET epoch = EXCLUDED.epoch,"
        " shard_id = EXCLUDED.shard_id, claimed_at = now()"
        " WHERE symbol_owner.epoch < EXCLUDED.epoch"
        "  OR (symbol_owner.epoch = EXCLUDED.epoch AND symbol_owner.shard_id = EXCLUDED.shard_id)"
        " RETURNING epoch",
        (symbol, epoch, shard_id),
    )
    if await cur.fetchone() is None:
        current = await current_epoch(conn, symbol)
        raise FencedError({symbol: (epoch, current)})


async def claim_next_epoch(conn: psycopg.AsyncConnection, symbol: str, shard_id: str) -> int:
    """Take ownership of ``symbol`` with an epoch above every earlier one; returns it."""
    cur = await conn.execute(
        "INSERT INTO symbol_owner (symbol, epoch, shard_id)"
        " SELECT symbol, 1, %s FROM symbols WHERE symbol = %s"
        " ON CONFLICT (symbol) DO UPDATE SET epoch = symbol_owner.epoch + 1,"
        " shard_id = EXCLUDED.shard_id, claimed_at = now()"
        " RETURNING epoch",
        (shard_id, symbol),
    )
    row = await cur.fetchone()
    if row is None:
        raise UnknownSymbolError(f"unknown symbol {symbol!r}")
    return int(row[0])


async def current_epoch(conn: psycopg.AsyncConnection, symbol: str) -> int:
    cur = await conn.execute("SELECT epoch FROM symbol_owner WHERE symbol = %s", (symbol,))
    row = await cur.fetchone()
    return -1 if row is None else int(row[0])


@contextlib.asynccontextmanager
async def ending_stale_holders(
    pool: AsyncConnectionPool, conn: psycopg.AsyncConnection, grace: float = STALE_HOLDER_GRACE
) -> AsyncIterator[None]:
    """While the block runs a claim on ``conn``: every ``grace`` seconds, end the sessions
    that block it."""
    ender = asyncio.create_task(_end_blockers(pool, conn.info.backend_pid, grace))
    try:
        yield
    finally:
        ender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ender


async def _end_blockers(pool: AsyncConnectionPool, pid: int, grace: float) -> None:
    while True:
        await asyncio.sleep(grace)
        try:
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT b, pg_terminate_backend(b) FROM unnest(pg_blocking_pids(%s)) AS b",
                    (pid,),
                )
                ended = [row[0] for row in await cur.fetchall() if row[1]]
        except psycopg.Error as exc:  # not allowed to, or Postgres away: the claim times out
            log.warning("could not end the sessions blocking an epoch claim: %s", exc)
            continue
        if ended:
            log.warning("ended sessions %s that held a symbol's owner row past %.1fs", ended, grace)
