"""Set-up and checks of `spotmatch bench cluster`: bench symbols, readiness, reconciliation.

Symbols are created the way `spotmatch ctl symbols add` creates them: reference data in
Postgres first (``persistence.symbols.create_symbol``), then the catalog entry in the registry
(``cluster.operations.add_symbol``); the controller places each on a shard, which fences,
loads and marks it ACTIVE. The load starts only once every symbol is ACTIVE in the registry
and a probe order per symbol went through the router (its table follows etcd by watch, so it
may see the assignment a moment after the registry has it).
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import psycopg

from cluster.errors import ClusterError
from cluster.etcd import EtcdRegistry
from cluster.model import Assignment, AssignmentState
from cluster.operations import add_symbol
from matching.v1 import gateway_pb2, gateway_pb2_grpc, orders_pb2, types_pb2
from persistence.migrate import migrate
from persistence.symbols import create_symbol

from .errors import BenchError
from .load import MID

log = logging.getLogger(__name__)

ETCD_TIMEOUT = 5.0  # every registry call
PG_CONNECT_TIMEOUT = 10  # seconds (psycopg's connect_timeout is an int)
ACTIVE_TIMEOUT = 60.0  # all bench symbols placed, fenced, loaded and ACTIVE
ROUTABLE_TIMEOUT = 30.0  # a probe order per symbol accepted through the router
PROBE_CALL_TIMEOUT = 5.0  # one probe SubmitOrder
POLL_INTERVAL = 0.2


def bench_symbols(count: int) -> list[str]:
    return [f"BENCH-{i}" for i in range(count)]


async def create_bench_symbols(
    etcd_endpoint: str, etcd_prefix: str, dsn: str, symbols: list[str]
) -> None:
    """Reference data in Postgres, then the registry catalog; wait until all are ACTIVE."""
    await migrate(dsn)  # idempotent; `ctl symbols add` does the same
    async with await psycopg.AsyncConnection.connect(
        dsn, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT
    ) as conn:
        for symbol in symbols:
            await create_symbol(conn, symbol)
    registry = EtcdRegistry([etcd_endpoint], prefix=etcd_prefix, timeout=ETCD_TIMEOUT)
    try:
        await registry.connect()
        for symbol in symbols:
            await add_symbol(registry, symbol)
        await _wait_active(registry, symbols)
    except ClusterError as exc:
        raise BenchError(f"cannot create the bench symbols: {exc}") from exc
    finally:
        await registry.close()


async def _wait_active(registry: EtcdRegistry, symbols: list[str]) -> None:
    deadline = time.monotonic() + ACTIVE_TIMEOUT
    while True:
        view = await registry.snapshot()
        pending = [
            s
            for s in symbols
            if (a := view.assignments.get(s)) is None or a.state is not AssignmentState.ACTIVE
        ]
        if not pending:
            return
        if time.monotonic() >= deadline:
            states = {s: _state(view.assignments.get(s)) for s in pending}
            raise BenchError(f"symbols not ACTIVE after {ACTIVE_TIMEOUT:.0f}s: {states}")
        await asyncio.sleep(POLL_INTERVAL)


def _state(assignment: Assignment | None) -> str:
    return "unplaced" if assignment is None else assignment.state.value


async def wait_routable(target: str, symbols: list[str]) -> list[int]:
    """One accepted probe order per symbol through ``target``; returns their order ids."""
    deadline = time.monotonic() + ROUTABLE_TIMEOUT
    acked: list[int] = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = gateway_pb2_grpc.OrderGatewayServiceStub(channel)
        for n, symbol in enumerate(symbols):
            last = ""
            while True:
                if time.monotonic() >= deadline:
                    raise BenchError(f"{symbol} not tradable through {target}: {last}")
                try:
                    reply = await stub.SubmitOrder(_probe(symbol, n), timeout=PROBE_CALL_TIMEOUT)
                    report = reply.report
                    if report.status != types_pb2.ORDER_STATUS_REJECTED and report.order_id:
                        acked.append(report.order_id)
                        break
                    last = f"rejected: {types_pb2.RejectCode.Name(report.reject_code)}"
                except grpc.aio.AioRpcError as exc:
                    last = f"{exc.code().name}: {exc.details()}"
                await asyncio.sleep(POLL_INTERVAL)
    return acked


def _probe(symbol: str, n: int) -> gateway_pb2.SubmitOrderRequest:
    # Far from the touch so it never trades; the same client order id on every retry makes
    # a retry after an unknown outcome idempotent.
    return gateway_pb2.SubmitOrderRequest(
        order=orders_pb2.PlaceOrder(
            symbol=symbol,
            account="bench-probe",
            side=types_pb2.SIDE_BUY,
            order_type=types_pb2.ORDER_TYPE_LIMIT,
            time_in_force=types_pb2.TIME_IN_FORCE_GTC,
            price=MID // 2,
            quantity=1,
            stp_mode=types_pb2.STP_MODE_NONE,
            client_order_id=f"probe-{n}",
        )
    )


def missing_acks(dsn: str, acked: list[int]) -> int:
    """Acknowledged order ids with no row in Postgres' ``orders`` table (must be 0)."""
    unique = set(acked)
    with psycopg.connect(dsn, connect_timeout=PG_CONNECT_TIMEOUT) as conn:
        row = conn.execute(
            "SELECT count(*) FROM orders WHERE order_id = ANY(%s)", (list(unique),)
        ).fetchone()
    return len(unique) - (int(row[0]) if row else 0)
