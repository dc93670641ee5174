"""`python -m tools.bench.writer_cost [N ...]`: what one batch transaction costs, by size.

The real BatchWriter (on uvloop, as in a shard) against a private Postgres commits 300
batches of N commands each, one after another: N new orders and journal rows, N/5 fills, and
N/3 updates of the orders of the batch before. Prints, per N, the CPU this process spent
per batch and per command (the shard's side: psycopg, the COPY text) and the CPU Postgres
spent (postmaster and backends). Two sizes give the fixed cost per batch and the cost per
command (docs/benchmarks.md, 2026-12-07).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import psycopg
import uvloop
from psycopg_pool import AsyncConnectionPool

from persistence.fencing import claim_next_epoch
from persistence.rows import BatchRows, FillRow, JournalRow, OrderRow, OrderUpdate
from persistence.writer import BatchWriter, configure_connection

from .cpu import tree_cpu_seconds
from .shard_setup import BENCH_SYMBOLS, prepare_bench_db

BATCHES = 300
SYMBOL = BENCH_SYMBOLS[0]


def _batches(n: int, first_id: int, epoch: int) -> list[BatchRows]:
    out: list[BatchRows] = []
    order_id, seq, before = first_id, 0, list[int]()
    for _ in range(BATCHES):
        rows = BatchRows(epochs={SYMBOL: epoch})
        placed = []
        for i in range(n):
            order_id, seq = order_id + 1, seq + 1
            account, side, price, cloid = f"acct{i % 7}", 1 + i % 2, 1_000 + i, f"c{order_id}"
            placed.append(order_id)
            rows.orders[order_id] = OrderRow(
                order_id, SYMBOL, account, cloid, side, 1, 1, False, 1, price, 5, 0, 5, 1,
                seq, seq, seq,
            )  # fmt: skip
            rows.journal.append(JournalRow(
                SYMBOL, seq, 1, account, cloid, order_id, side, 1, 1, False, 1, price, 5, 0,
                1, 0, 0, 5, epoch, "{}",
            ))  # fmt: skip
            if i % 5 == 0:
                fill = FillRow(SYMBOL, seq, 0, order_id - 1, order_id, "m", "t", price, 1, 0)
                rows.fills.append(fill)
        for cancelled in before[: n // 3]:
            rows.updates[cancelled] = OrderUpdate(cancelled, 4, None, None, None, 0, None, seq)
        before = placed
        out.append(rows)
    return out


async def _measure(dsn: str, postgres_pid: int, n: int, first_id: int) -> str:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        epoch = await claim_next_epoch(conn, SYMBOL, "writer-cost")
        await conn.execute("DELETE FROM journal")  # seqs start again at 1 for each size
        await conn.execute("DELETE FROM fills")
    batches = _batches(n, first_id, epoch)
    pool = AsyncConnectionPool(dsn, min_size=2, max_size=2, configure=configure_connection,
                               open=False)  # fmt: skip
    async with pool:
        await pool.open(wait=True)
        writer = BatchWriter(pool)
        client, server = time.process_time(), tree_cpu_seconds(postgres_pid)
        for rows in batches:
            await writer.commit(rows)
        client = (time.process_time() - client) * 1e6 / BATCHES
        server = (tree_cpu_seconds(postgres_pid) - server) * 1e6 / BATCHES
    return (
        f"N={n:>4}: client {client:6.0f} us per batch ({client / n:5.1f} per command),"
        f" Postgres {server:6.0f} us per batch ({server / n:5.1f} per command)"
    )


async def _run(dsn: str, postgres_pid: int, sizes: list[int]) -> None:
    await prepare_bench_db(dsn)
    first_id = 0
    for n in sizes:
        print(await _measure(dsn, postgres_pid, n, first_id), flush=True)
        first_id += n * BATCHES


def main() -> None:
    from tools.services.postgres import PostgresServer  # noqa: PLC0415 - heavy, tool-only

    sizes = [int(a) for a in sys.argv[1:]] or [25, 150, 600]
    with tempfile.TemporaryDirectory(prefix="spotmatch-writer-") as tmp:
        pg = PostgresServer(Path(tmp) / "pg")
        pg.start()
        try:
            dsn = pg.create_database("writer")
            assert pg.pid is not None
            uvloop.run(_run(dsn, pg.pid, sizes))
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
