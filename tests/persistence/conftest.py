"""A migrated database with one symbol at epoch 1, and a pool configured as shards do."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from persistence.fencing import claim_next_epoch
from persistence.migrate import migrate
from persistence.symbols import create_symbol
from persistence.writer import configure_connection
from tests.persistence.support import SYMBOL


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[AsyncConnectionPool]:
    await migrate(pg_dsn)
    async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
        await create_symbol(conn, SYMBOL)
        assert await claim_next_epoch(conn, SYMBOL, "shard-1") == 1
    async with AsyncConnectionPool(
        pg_dsn, min_size=1, max_size=4, configure=configure_connection, open=False
    ) as pool:
        yield pool
