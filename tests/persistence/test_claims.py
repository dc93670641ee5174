"""Client order id claims against a real Postgres: new ids are bound to their symbol in one
statement, ids bound before come back with their symbol and placement, and the migration
binds every id already placed."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from persistence.claims import Claimed, claim_client_order_ids
from persistence.migrate import available_migrations, migrate
from persistence.writer import BatchWriter
from tests.checkers import check_durable_record
from tests.persistence.support import SYMBOL, batch, journal, order, rows

OTHER = "ETH-USD"


async def claim(pool: AsyncConnectionPool, wanted: dict[tuple[str, str], str]) -> Claimed:
    async with pool.connection() as conn:
        return await claim_client_order_ids(conn, wanted)


async def test_new_ids_are_bound_to_their_symbols(pool: AsyncConnectionPool) -> None:
    wanted = {("a", "c1"): SYMBOL, ("a", "c2"): OTHER, ("b", "c\x1fsep"): SYMBOL}
    assert await claim(pool, wanted) == Claimed([], {})
    stored = await rows(pool, "SELECT account, client_order_id, symbol FROM client_order_claims")
    assert sorted(stored) == sorted((a, c, s) for (a, c), s in wanted.items())


@pytest.mark.parametrize("odd", ["it's", "back\\slash", "E'\\x1f'", "'); DROP TABLE orders; --"])
async def test_ids_are_stored_exactly_whatever_quotes_they_hold(
    pool: AsyncConnectionPool, odd: str
) -> None:
    wanted = {(odd, "c1"): SYMBOL, ("a", odd): SYMBOL}
    assert await claim(pool, wanted) == Claimed([], {})
    stored = await rows(pool, "SELECT account, client_order_id FROM client_order_claims")
    assert sorted(stored) == sorted(wanted)
    assert await claim(pool, wanted) == Claimed([], wanted)  # and found again by key


async def test_ids_bound_before_come_back_with_their_symbol_and_placement(
    pool: AsyncConnectionPool,
) -> None:
    await claim(pool, {("a", "placed"): SYMBOL, ("a", "unplaced"): SYMBOL})
    placed = batch()
    placed.orders[1] = order(1, "a", "placed")
    placed.journal.append(journal(1, "a", "placed"))
    await BatchWriter(pool).commit(placed)

    again = await claim(
        pool, {("a", "placed"): OTHER, ("a", "unplaced"): OTHER, ("a", "new"): OTHER}
    )

    assert again.symbols == {
        ("a", "placed"): SYMBOL,
        ("a", "unplaced"): SYMBOL,
        ("a", "new"): OTHER,
    }
    assert [(p.client_order_id, p.symbol, p.order_id) for p in again.placements] == [
        ("placed", SYMBOL, 1)
    ]
    (count,) = (await rows(pool, "SELECT count(*) FROM client_order_claims"))[0]
    assert count == 3  # the new id was claimed too, the bound ones left as they were


async def test_the_migration_binds_every_id_already_placed(pg_dsn: str) -> None:
    first = available_migrations()[0]
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await migrate_only(conn, first.version, first.name, first.sql)
        for order_id, cloid in [(1, "c1"), (2, None)]:
            await conn.execute(
                "INSERT INTO orders VALUES (%s, %s, 'a', %s, 1, 1, 1, false, 1, 100, 5, 0, 5,"
                " 0, 1, 1, 1)",
                (order_id, SYMBOL, cloid),
            )
    await migrate(pg_dsn)
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        cur = await conn.execute("SELECT account, client_order_id, symbol FROM client_order_claims")
        assert await cur.fetchall() == [("a", "c1", SYMBOL)]


async def migrate_only(conn: psycopg.AsyncConnection, version: int, name: str, sql: str) -> None:
    """A database as an older release left it: only the first migration applied."""
    await conn.execute(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    await conn.execute(sql.encode())
    await conn.execute(
        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name)
    )


async def test_the_record_checker_finds_an_order_placed_without_its_claim(
    pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    await claim(pool, {("a", "claimed"): SYMBOL, ("a", "elsewhere"): OTHER})
    placed = batch()
    for order_id, cloid in enumerate(["claimed", "elsewhere"], 1):
        placed.orders[order_id] = order(order_id, "a", cloid)
        placed.journal.append(journal(order_id, "a", cloid))
    await BatchWriter(pool).commit(placed)
    with pytest.raises(
        AssertionError, match=r"not claimed for their symbol.*\(2, 'BTC-USD', 'ETH-USD'\)"
    ):
        check_durable_record(pg_dsn)


async def test_shards_claiming_the_same_ids_in_opposite_orders_do_not_deadlock(
    pool: AsyncConnectionPool,
) -> None:
    """Each claim waits for the other's uncommitted rows; in different orders both would
    wait for each other until Postgres broke the tie (DeadlockDetected, a batch refused)."""
    for round_ in range(3):
        keys = [("a", f"r{round_}-{i:04d}") for i in range(1_000)]
        forward = dict.fromkeys(keys, SYMBOL)
        backward = dict.fromkeys(reversed(keys), OTHER)
        first, second = await asyncio.gather(claim(pool, forward), claim(pool, backward))
        bound = {**first.symbols, **second.symbols}
        assert len(bound) == len(keys) and set(bound.values()) <= {SYMBOL, OTHER}


async def test_an_id_with_an_empty_account_is_claimed_like_any_other(
    pool: AsyncConnectionPool,
) -> None:
    """The engine rejects an empty account; its claim must not fail the batch first (one
    empty string splits into no element at all)."""
    assert await claim(pool, {("", "c1"): SYMBOL}) == Claimed([], {})
    assert await claim(pool, {("", ""): SYMBOL, ("b", ""): SYMBOL}) == Claimed([], {})
    stored = await rows(pool, "SELECT account, client_order_id FROM client_order_claims")
    assert sorted(stored) == [("", ""), ("", "c1"), ("b", "")]
