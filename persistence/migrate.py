"""Versioned schema migrations: numbered SQL files applied once each, in order."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

import psycopg

from .errors import MigrationError

log = logging.getLogger(__name__)

_LOCK_KEY = 0x5F07_3A7C  # advisory lock: concurrent migrators (shards starting together) queue


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("persistence.migrations").iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append(Migration(version, entry.name, entry.read_text()))
    found.sort(key=lambda m: m.version)
    if len({m.version for m in found}) != len(found):
        raise MigrationError("two migrations share a version number")
    return found


async def migrate(dsn: str, connect_timeout: float = 10.0) -> list[int]:
    """Apply pending migrations; returns the versions applied (empty when up to date)."""
    async with await psycopg.AsyncConnection.connect(
        dsn, autocommit=True, connect_timeout=int(connect_timeout)
    ) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            return await _apply_pending(conn)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


async def _apply_pending(conn: psycopg.AsyncConnection) -> list[int]:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    cur = await conn.execute("SELECT version FROM schema_migrations")
    done = {row[0] for row in await cur.fetchall()}
    applied = []
    for migration in available_migrations():
        if migration.version in done:
            continue
        async with conn.transaction():
            await conn.execute(migration.sql.encode())
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
        log.info("applied migration %s", migration.name)
        applied.append(migration.version)
    return applied
