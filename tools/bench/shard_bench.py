"""`spotmatch bench shard`: a real shard process with a real Postgres, driven over gRPC.

Runs, on one box: a private Postgres, one shard process, and the load generator here. The
CPU time the shard and Postgres (its postmaster and backends) spend per order is read from
/proc over each run (tools/bench/cpu.py).
1. max throughput: ``clients`` Trade streams, ``window`` messages of ``batch`` in flight;
2. open loop at ``rate`` orders/s (default: half the measured maximum), latency from each
   message's due time (no coordinated omission);
3. engine only: the same kind of flow through the in-process engine, for the ratio;
4. recovery: 100,000 resting orders claimed and loaded into an engine, timed;
then reconciles: every acknowledged order must be in Postgres.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from .cpu import CpuMeter
from .load import MAX_RATE, ClientFlow, LoadResult, drive_streams, percentile
from .output import Progress
from .shard_setup import BENCH_SYMBOLS, engine_orders_per_sec, prepare_bench_db, recovery_seconds


@dataclass(frozen=True)
class ShardBenchParams:
    clients: int = 4
    batch: int = 100
    window: int = 4
    duration_s: float = 10.0
    rate: float | None = None  # open-loop orders/s; None: half of the measured maximum
    seed: int = 1
    recovery_orders: int = 100_000
    max_rate: float = MAX_RATE  # closed loop: orders/s worth of messages prepared


async def _drive(target: str, p: ShardBenchParams, rate: float | None, seed: int) -> LoadResult:
    flows = [ClientFlow(c, list(BENCH_SYMBOLS), seed) for c in range(p.clients)]
    return await drive_streams(target, flows, p.batch, p.window, p.duration_s, rate, p.max_rate)


def _summary(result: LoadResult) -> dict[str, Any]:
    lat = result.latencies_ms
    return {
        "orders_per_sec": round(result.orders / result.elapsed_s) if result.elapsed_s else 0,
        "orders": result.orders,
        "p50_ms": round(percentile(lat, 0.50), 2),
        "p99_ms": round(percentile(lat, 0.99), 2),
        "p999_ms": round(percentile(lat, 0.999), 2),
        "errors": result.errors + len(result.rpc_failures),
        "error_reasons": dict(result.error_reasons),
        "exhausted": result.exhausted,
    }


def _durable_rows(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM journal) + (SELECT count(*) FROM orders)"
            " + (SELECT count(*) FROM fills)"
        ).fetchone()
    return int(row[0]) if row else 0


def _missing_acks(dsn: str, acked: list[int]) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM orders WHERE order_id = ANY(%s)", (acked,)
        ).fetchone()
    return len(set(acked)) - (int(row[0]) if row else 0)


async def bench_shard(p: ShardBenchParams, progress: Progress) -> tuple[dict[str, Any], list[str]]:
    from tools.services.postgres import PostgresServer  # noqa: PLC0415 - heavy, bench-only
    from tools.services.shard_process import ShardProcess  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="spotmatch-bench-") as tmp:
        pg = PostgresServer(Path(tmp) / "pg")
        progress.update("starting Postgres")
        pg.start()
        try:
            dsn = pg.create_database("bench")
            await prepare_bench_db(dsn)
            shard = ShardProcess(dsn, Path(tmp), BENCH_SYMBOLS)
            progress.update("starting the shard")
            shard.start()
            try:
                assert shard.proc is not None and pg.pid is not None
                meter = CpuMeter({"shard": shard.proc.pid, "postgres": pg.pid})
                result = await _run_phases(shard.target, dsn, p, progress, meter)
            finally:
                shard.stop()
            progress.update(f"measuring recovery of {p.recovery_orders:,} resting orders")
            result["recovery_s"] = round(await recovery_seconds(dsn, p.recovery_orders), 3)
            result["recovery_orders"] = p.recovery_orders
        finally:
            pg.stop()
    progress.done()
    return result, _lines(result)


async def _run_phases(
    target: str, dsn: str, p: ShardBenchParams, progress: Progress, meter: CpuMeter
) -> dict[str, Any]:
    progress.update("warm-up")
    await _drive(target, ShardBenchParams(clients=1, batch=p.batch, duration_s=1.0), None, 99)
    progress.update(
        f"max throughput: {p.clients} streams x {p.window} x {p.batch} orders, {p.duration_s:.0f}s"
    )
    rows_before = _durable_rows(dsn)
    meter.start()  # the shard and Postgres idle while the load's messages are prepared
    peak = await _drive(target, p, None, p.seed)
    peak_cpu = meter.stop()
    rows_per_sec = (_durable_rows(dsn) - rows_before) / peak.elapsed_s  # from the first send
    peak_summary = _summary(peak)
    rate = p.rate or max(1000.0, peak_summary["orders_per_sec"] / 2)
    progress.update(f"open loop at {rate:,.0f} orders/s for {p.duration_s:.0f}s")
    meter.start()
    steady = await _drive(target, p, rate, p.seed + 1)
    steady_cpu = meter.stop()
    progress.update("engine-only pass, reconciling")
    acked = peak.acked_order_ids + steady.acked_order_ids
    return {
        "target": "shard",
        **{k: peak_summary[k] for k in ("orders_per_sec", "p50_ms", "p99_ms", "errors")},
        "p999_ms": peak_summary["p999_ms"],
        "error_reasons": peak_summary["error_reasons"],
        "exhausted": peak_summary["exhausted"],
        "engine_orders_per_sec": round(engine_orders_per_sec(p.seed)),
        "rows_committed_per_sec": round(rows_per_sec),
        "cpu_us_per_order": _per_order(peak_cpu, peak.orders),
        "open_loop": {
            "rate": round(rate),
            **_summary(steady),
            "cpu_us_per_order": _per_order(steady_cpu, steady.orders),
        },
        "params": {
            "clients": p.clients,
            "batch": p.batch,
            "window": p.window,
            "duration_s": p.duration_s,
            "max_rate": p.max_rate,
        },
        "acked_orders": len(acked),
        "missing_acked_orders": _missing_acks(dsn, acked),
        "rpc_failures": (peak.rpc_failures + steady.rpc_failures)[:5],
    }


def _per_order(cpu_seconds: dict[str, float], orders: int) -> dict[str, float]:
    return {name: round(s / orders * 1e6, 1) if orders else 0.0 for name, s in cpu_seconds.items()}


def _lines(r: dict[str, Any]) -> list[str]:
    o = r["open_loop"]
    return [
        f"max throughput: {r['orders_per_sec']:,} orders/s durable  p50 {r['p50_ms']} ms"
        f"  p99 {r['p99_ms']} ms  p99.9 {r['p999_ms']} ms  errors {r['errors']}",
        f"open loop at {o['rate']:,}/s: {o['orders_per_sec']:,} orders/s  p50 {o['p50_ms']} ms"
        f"  p99 {o['p99_ms']} ms  p99.9 {o['p999_ms']} ms  errors {o['errors']}",
        f"CPU per order at max: shard {r['cpu_us_per_order']['shard']} us, Postgres"
        f" {r['cpu_us_per_order']['postgres']} us; in the open loop: shard"
        f" {o['cpu_us_per_order']['shard']} us, Postgres {o['cpu_us_per_order']['postgres']} us",
        f"engine only, same flow: {r['engine_orders_per_sec']:,} orders/s;"
        f" rows committed: {r['rows_committed_per_sec']:,}/s",
        f"recovery: {r['recovery_orders']:,} resting orders claimed and loaded"
        f" in {r['recovery_s']} s",
        f"reconciliation: {r['acked_orders']:,} acknowledged orders,"
        f" {r['missing_acked_orders']} missing from Postgres",
        *(["note: the max run used up its prepared messages; raise --max-rate"]
          if r["exhausted"] else []),
    ]  # fmt: skip
