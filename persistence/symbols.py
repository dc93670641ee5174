"""Reference data: create symbols and change their trading status."""

from __future__ import annotations

import psycopg

from .errors import PersistenceError, UnknownSymbolError
from .rows import SymbolRow


async def create_symbol(
    conn: psycopg.AsyncConnection,
    symbol: str,
    tick_size: int = 1,
    lot_size: int = 1,
    min_quantity: int = 1,
    max_quantity: int = (1 << 63) - 1,
) -> SymbolRow:
    """Add a symbol; its symbol_id (part of every order id) is the next free number."""
    try:
        cur = await conn.execute(
            "INSERT INTO symbols"
            " (symbol, symbol_id, tick_size, lot_size, min_quantity, max_quantity)"
            " SELECT %s, coalesce(max(symbol_id), 0) + 1, %s, %s, %s, %s FROM symbols"
            " RETURNING symbol, symbol_id, tick_size, lot_size, min_quantity, max_quantity, status",
            (symbol, tick_size, lot_size, min_quantity, max_quantity),
        )
    except psycopg.errors.UniqueViolation as exc:
        raise PersistenceError(f"symbol {symbol!r} already exists") from exc
    row = await cur.fetchone()
    assert row is not None
    return SymbolRow(*row)


async def set_symbol_status(conn: psycopg.AsyncConnection, symbol: str, status: int) -> None:
    cur = await conn.execute("UPDATE symbols SET status = %s WHERE symbol = %s", (status, symbol))
    if cur.rowcount == 0:
        raise UnknownSymbolError(f"unknown symbol {symbol!r}")
