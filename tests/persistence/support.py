"""Rows and queries shared by the persistence tests."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from persistence.rows import BatchRows, JournalRow, OrderRow

SYMBOL = "BTC-USD"


def order(order_id: int, account: str = "a", cloid: str = "", leaves: int = 5) -> OrderRow:
    return OrderRow(order_id, SYMBOL, account, cloid, 1, 1, 1, False, 1, 100, 5, 0, leaves,
                    0, order_id, order_id, order_id)  # fmt: skip


def journal(seq: int, account: str = "a", cloid: str = "", epoch: int = 1) -> JournalRow:
    return JournalRow(SYMBOL, seq, 1, account, cloid, seq, 1, 1, 1, True, 1, 100, 5, 0, 0, 0,
                      0, 5, epoch, "{}")  # fmt: skip


def batch(epoch: int = 1) -> BatchRows:
    return BatchRows(epochs={SYMBOL: epoch})


async def rows(pool: AsyncConnectionPool, sql: str) -> list[tuple[object, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(sql)
        return await cur.fetchall()
