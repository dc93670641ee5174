"""Recovery: read back what a symbol's book was at its last commit."""

from __future__ import annotations

import psycopg

from .errors import UnknownSymbolError
from .rows import RestingOrderRow, SymbolRow, SymbolSnapshot

_SYMBOL_COLUMNS = "symbol, symbol_id, tick_size, lot_size, min_quantity, max_quantity, status"


async def load_symbol(conn: psycopg.AsyncConnection, symbol: str, epoch: int) -> SymbolSnapshot:
    """Reference data, last sequence and resting orders in priority order, in one snapshot."""
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        await conn.execute("SET LOCAL statement_timeout = 0")  # a deep book takes its time
        spec = await load_symbol_row(conn, symbol)
        cur = await conn.execute(
            "SELECT coalesce(max(seq), 0) FROM journal WHERE symbol = %s", (symbol,)
        )
        row = await cur.fetchone()
        last_seq = int(row[0]) if row else 0
        resting = await _resting_orders(conn, symbol)
    return SymbolSnapshot(spec, last_seq, epoch, resting)


async def load_symbol_row(conn: psycopg.AsyncConnection, symbol: str) -> SymbolRow:
    cur = await conn.execute(f"SELECT {_SYMBOL_COLUMNS} FROM symbols WHERE symbol = %s", (symbol,))
    row = await cur.fetchone()
    if row is None:
        raise UnknownSymbolError(f"unknown symbol {symbol!r}")
    return SymbolRow(*row)


async def _resting_orders(conn: psycopg.AsyncConnection, symbol: str) -> list[RestingOrderRow]:
    # Binary COPY out is the fastest way to stream 100k rows through psycopg.
    rows: list[RestingOrderRow] = []
    query = (
        "COPY (SELECT order_id, account, coalesce(client_order_id, ''), side, price, quantity,"
        " cum_qty, leaves_qty, priority, stp, post_only FROM orders"
        " WHERE symbol = %s AND leaves_qty > 0 ORDER BY priority)"
        " TO STDOUT (FORMAT BINARY)"
    )
    async with conn.cursor() as cur, cur.copy(query.encode(), (symbol,)) as copy:
        copy.set_types(
            ["int8", "text", "text", "int4", "int8", "int8", "int8", "int8", "int8", "int4", "bool"]
        )
        async for row in copy.rows():
            rows.append(RestingOrderRow(*row))
    return rows


async def list_symbols(conn: psycopg.AsyncConnection) -> list[SymbolRow]:
    cur = await conn.execute(f"SELECT {_SYMBOL_COLUMNS} FROM symbols ORDER BY symbol")
    return [SymbolRow(*row) for row in await cur.fetchall()]
