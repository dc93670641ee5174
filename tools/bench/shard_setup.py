"""Database set-up and in-process measurements for `spotmatch bench shard`."""

from __future__ import annotations

import time

import psycopg
from psycopg_pool import AsyncConnectionPool

from persistence.copy_text import ORDER_COLUMNS
from persistence.migrate import migrate
from persistence.symbols import create_symbol
from persistence.writer import configure_connection
from shard.edge import command_from_pb
from shard.engine import MatchingEngine, SymbolSpec
from shard.loading import take_symbol

from .load import MID, ClientFlow

BENCH_SYMBOLS = ("BENCH-0", "BENCH-1", "BENCH-2", "BENCH-3")
RECOVERY_SYMBOL = "RECOVER-1"


async def prepare_bench_db(dsn: str) -> None:
    await migrate(dsn)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for symbol in (*BENCH_SYMBOLS, RECOVERY_SYMBOL):
            await create_symbol(conn, symbol)


def engine_orders_per_sec(seed: int, n_messages: int = 2_000, batch: int = 100) -> float:
    """The same client flows through the engine alone (no gRPC, no Postgres)."""
    flows = [ClientFlow(c, list(BENCH_SYMBOLS), seed) for c in range(4)]
    commands = [
        command_from_pb(pb) for i in range(n_messages) for pb in flows[i % 4].message(batch)
    ]
    engine = MatchingEngine()
    for i, symbol in enumerate(BENCH_SYMBOLS):
        engine.add_symbol(SymbolSpec(symbol, i + 1))
    # Cancels by client order id are resolved by the engine itself.
    started = time.perf_counter()
    engine.execute_batch(commands)  # type: ignore[arg-type]
    return len(commands) / (time.perf_counter() - started)


async def recovery_seconds(dsn: str, n_orders: int) -> float:
    """Write ``n_orders`` resting orders for one symbol, then time claim + load + install."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        (symbol_id,) = await (
            await conn.execute(
                "SELECT symbol_id FROM symbols WHERE symbol = %s", (RECOVERY_SYMBOL,)
            )
        ).fetchone()  # type: ignore[misc]
        async with (
            conn.cursor() as cur,
            cur.copy(f"COPY orders ({ORDER_COLUMNS}) FROM STDIN".encode()) as copy,
        ):
            for i in range(1, n_orders + 1):
                is_buy = i % 2 == 0
                price = MID - 1 - i % 500 if is_buy else MID + 1 + i % 500
                await copy.write_row(
                    (
                        symbol_id << 40 | i,
                        RECOVERY_SYMBOL,
                        f"acct-{i % 100}",
                        None,
                        1 if is_buy else 2,
                        1,
                        1,
                        False,
                        1,
                        price,
                        10,
                        0,
                        10,
                        1,
                        i,
                        i,
                        i,
                    )
                )
    async with AsyncConnectionPool(
        dsn, min_size=1, max_size=2, configure=configure_connection
    ) as pool:
        engine = MatchingEngine()
        started = time.perf_counter()
        await take_symbol(pool, engine, RECOVERY_SYMBOL, "bench-recovery")
        elapsed = time.perf_counter() - started
    assert len(engine.book(RECOVERY_SYMBOL).open_orders()) == n_orders
    return elapsed
