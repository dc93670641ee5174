"""The launcher's asynchronous steps: schema and symbols, and waiting for the cluster to form.

Each runs under its own ``asyncio.run`` from the (synchronous) launcher and raises
LauncherError with a message saying what did not happen in time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import redis

from cluster.errors import ClusterError
from cluster.etcd import EtcdRegistry
from cluster.model import ClusterView
from persistence.errors import PersistenceError
from persistence.loader import list_symbols
from persistence.migrate import migrate
from persistence.symbols import create_symbol
from tools.cluster.errors import LauncherError
from tools.services.ports import HOST

ETCD_TIMEOUT = 2.0  # every etcd call
PG_TIMEOUT = 10.0  # connecting to Postgres
REDIS_TIMEOUT = 2.0
POLL_INTERVAL = 0.1


@dataclass(frozen=True)
class EtcdTarget:
    endpoint: str
    prefix: str

    def registry(self) -> EtcdRegistry:
        return EtcdRegistry([self.endpoint], prefix=self.prefix, timeout=ETCD_TIMEOUT)


Wait = Callable[[EtcdTarget, list[str], float], Coroutine[Any, Any, None]]


async def prepare(dsn: str, etcd: EtcdTarget, symbols: Sequence[str]) -> None:
    """Migrate the schema once (before any shard starts), then create ``symbols`` with unit
    tick and lot sizes in Postgres and add them to the cluster's catalog."""
    try:
        await migrate(dsn, PG_TIMEOUT)
        async with await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, connect_timeout=int(PG_TIMEOUT)
        ) as conn:
            existing = {row.symbol for row in await list_symbols(conn)}
            for symbol in symbols:
                if symbol not in existing:
                    await create_symbol(conn, symbol)
    except (psycopg.Error, PersistenceError, OSError) as exc:
        raise LauncherError(f"database set-up failed: {exc}") from exc
    registry = etcd.registry()
    try:
        for symbol in symbols:
            await registry.add_symbol(symbol)
    except ClusterError as exc:
        raise LauncherError(f"cannot add symbols to etcd at {etcd.endpoint}: {exc}") from exc
    finally:
        await registry.close()


async def wait_members(etcd: EtcdTarget, shard_ids: list[str], deadline: float) -> None:
    """Until every shard is registered under its lease."""

    def missing(view: ClusterView) -> list[str]:
        return [s for s in shard_ids if s not in view.shards]

    await _poll(etcd, missing, deadline, "shards not registered in etcd")


async def wait_placed(etcd: EtcdTarget, symbols: list[str], deadline: float) -> None:
    """Until every symbol is ACTIVE on a shard (the controller placed it, the shard loaded it)."""

    def missing(view: ClusterView) -> list[str]:
        return [
            s for s in symbols if s not in view.assignments or not view.assignments[s].routable()
        ]

    await _poll(etcd, missing, deadline, "symbols not active on a shard")


async def _poll(
    etcd: EtcdTarget, missing: Callable[[ClusterView], list[str]], deadline: float, what: str
) -> None:
    registry = etcd.registry()
    left: list[str] = []
    last_error = ""
    try:
        while time.monotonic() < deadline:
            try:
                left = missing(await registry.snapshot())
                last_error = ""
            except ClusterError as exc:
                last_error = f" (last etcd error: {exc})"
            else:
                if not left:
                    return
            await asyncio.sleep(POLL_INTERVAL)
    finally:
        await registry.close()
    raise LauncherError(f"{what} before the start deadline: {', '.join(left)}{last_error}")


def redis_pid(port: int) -> int:
    """The pid of the Redis node on ``port``, as it reports it (INFO server)."""
    try:
        with redis.Redis(
            HOST, port, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
        ) as client:
            info = client.info("server")
    except redis.RedisError as exc:
        raise LauncherError(f"cannot ask the redis node on port {port} for its pid: {exc}") from exc
    return int(info["process_id"])
