"""An epoch claim is not held up for good by a previous owner frozen inside a statement.

The previous owner's batch transaction holds the symbol's ``symbol_owner`` row FOR SHARE.
Frozen while idle, Postgres ends it after idle_in_transaction_session_timeout; frozen in the
middle of a COPY (a SIGSTOP under load: the chaos run caught one), the session stays
"active" and kept the new owner's claim waiting until the process ran again. The claim now
ends the sessions that block it once it has waited a grace period."""

from __future__ import annotations

import asyncio
import time

import psycopg
from psycopg_pool import AsyncConnectionPool

from persistence.fencing import STALE_HOLDER_GRACE, claim_epoch, ending_stale_holders
from shard.engine import MatchingEngine
from shard.loading import take_symbol
from tests.persistence.support import SYMBOL, rows


async def test_a_claim_ends_an_old_owner_frozen_inside_a_copy(
    pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    frozen = await psycopg.AsyncConnection.connect(pg_dsn)  # a transaction, as a batch's
    try:
        await frozen.execute("SELECT 1 FROM symbol_owner WHERE symbol = %s FOR SHARE", (SYMBOL,))
        copying = frozen.cursor().copy("COPY journal FROM STDIN")
        await copying.__aenter__()  # mid-statement, waiting for data that never comes
        frozen_pid = frozen.info.backend_pid
        started = time.monotonic()
        # As a new owner takes the symbol (statement_timeout 10 s would end the claim first).
        took = take_symbol(pool, MatchingEngine(), SYMBOL, "shard-2", epoch=2)
        assert await asyncio.wait_for(took, 8.0) == 2
        assert STALE_HOLDER_GRACE <= time.monotonic() - started < 8.0
        sessions = f"SELECT count(*) FROM pg_stat_activity WHERE pid = {frozen_pid}"
        for _ in range(50):  # bounded: ~5 s for the backend to exit
            if await rows(pool, sessions) == [(0,)]:
                break
            await asyncio.sleep(0.1)
        assert await rows(pool, sessions) == [(0,)]
    finally:
        await frozen.close()


async def test_a_claim_ends_no_session_that_does_not_block_it(
    pool: AsyncConnectionPool, pg_dsn: str
) -> None:
    async with await psycopg.AsyncConnection.connect(pg_dsn) as bystander:
        await bystander.execute("SELECT 1 FROM symbols WHERE symbol = %s FOR SHARE", (SYMBOL,))
        async with pool.connection() as conn, ending_stale_holders(pool, conn, grace=0.01):
            await claim_epoch(conn, SYMBOL, 2, "shard-2")
            await asyncio.sleep(0.1)  # the ender looks several times: nobody blocks the claim
        assert await (await bystander.execute("SELECT 1")).fetchone() == (1,)
    assert await rows(pool, "SELECT epoch FROM symbol_owner") == [(2,)]
