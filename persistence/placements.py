"""Idempotency lookups: what an (account, client_order_id) placement was, if it exists."""

from __future__ import annotations

from typing import NamedTuple

import psycopg

from .text_keys import unnest_texts


class StoredPlacement(NamedTuple):
    account: str
    client_order_id: str
    symbol: str
    side: int
    order_type: int
    time_in_force: int
    price: int
    quantity: int
    post_only: bool
    stp: int
    order_id: int
    seq: int  # the sequence number of the placement
    status: int  # the placement's result, from the journal
    reject_code: int
    cum_qty: int
    leaves_qty: int
    expired: list[int] | None  # orders it expired (STP makers); None: stored before 0003
    fills: list[StoredFill]


class StoredFill(NamedTuple):
    maker_order_id: int
    maker_account: str
    maker_client_order_id: str
    price: int
    quantity: int
    maker_leaves_qty: int | None  # None: stored before migration 0003


# The placement as it was sent and answered: its journal row (the order row may have been
# amended since: a retry is compared with what was placed).
_PLACEMENTS = (
    "SELECT o.account, o.client_order_id, o.symbol, j.side, j.order_type, j.time_in_force,"
    " j.price, j.quantity, j.post_only, j.stp, o.order_id, j.seq, j.status, j.reject_code,"
    " j.cum_qty, j.leaves_qty, j.expired_order_ids"
    " FROM {keys} AS k(account, client_order_id)"
    " JOIN orders o USING (account, client_order_id)"
    " JOIN journal j ON j.symbol = o.symbol AND j.seq = o.created_seq"
)


async def find_placements(
    conn: psycopg.AsyncConnection, keys: list[tuple[str, str]]
) -> list[StoredPlacement]:
    """One round trip for a batch's unseen client order ids, plus one for their fills."""
    unnest, params = unnest_texts([[k[0] for k in keys], [k[1] for k in keys]])
    cur = await conn.execute(_PLACEMENTS.format(keys=unnest), params)
    found = [StoredPlacement._make((*row, [])) for row in await cur.fetchall()]
    if found:
        await _attach_fills(conn, found)
    return found


async def _attach_fills(conn: psycopg.AsyncConnection, found: list[StoredPlacement]) -> None:
    by_seq = {(p.symbol, p.seq): p for p in found}
    cur = await conn.execute(
        "SELECT f.symbol, f.seq, f.maker_order_id, f.maker_account,"
        " coalesce(m.client_order_id, ''), f.price, f.quantity, f.maker_leaves_qty"
        " FROM unnest(%s::text[], %s::bigint[]) AS k(symbol, seq)"
        " JOIN fills f USING (symbol, seq) JOIN orders m ON m.order_id = f.maker_order_id"
        " ORDER BY f.symbol, f.seq, f.match_index",
        ([p.symbol for p in found], [p.seq for p in found]),
    )
    for symbol, seq, *fill in await cur.fetchall():
        by_seq[symbol, seq].fills.append(StoredFill._make(fill))


ORDER_QUERY_COLUMNS = (
    "symbol, order_id, coalesce(client_order_id, ''), account, side, order_type, time_in_force,"
    " post_only, stp, price, quantity, cum_qty, leaves_qty, status, priority, created_seq,"
    " updated_seq"
)


async def find_order(
    conn: psycopg.AsyncConnection, symbol: str, account: str, order_id: int, client_order_id: str
) -> tuple[object, ...] | None:
    """The committed state of one order of ``account`` (by id, else by client order id)."""
    if order_id:
        where, key = "order_id = %s", order_id
    else:
        where, key = "client_order_id = %s", client_order_id  # type: ignore[assignment]
    cur = await conn.execute(
        f"SELECT {ORDER_QUERY_COLUMNS} FROM orders WHERE {where} AND account = %s"
        " AND (%s = '' OR symbol = %s)",
        (key, account, symbol, symbol),
    )
    return await cur.fetchone()
