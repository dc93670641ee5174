"""Epoch claims: a new owner raises a symbol's epoch in Postgres before it loads the book.

With etcd (cluster issue) the epoch is the assignment's mod_revision, claimed with
``claim_epoch``; without it a shard takes the next epoch with ``claim_next_epoch``. Either
way the epoch only grows, and the previous owner's next commit is fenced.
"""

from __future__ import annotations

import psycopg

from .errors import FencedError, UnknownSymbolError


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
