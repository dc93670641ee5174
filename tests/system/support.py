"""Multi-process clusters for system tests: real etcd, real Postgres, shard processes in
cluster mode (each also a controller candidate), an etcd admin client, polling helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cluster.etcd import EtcdRegistry
from cluster.model import AssignmentState, ClusterView
from tests.shard.support import prepare_db
from tools.bench.load import ClientFlow, LoadResult, drive_streams
from tools.services.etcd import EtcdServer
from tools.services.ports import free_port
from tools.services.redis_cluster import RedisCluster
from tools.services.router_process import RouterProcess
from tools.services.shard_process import ShardProcess

SYMBOLS = ("BTC-USDT", "ETH-USDT")
LEASE_TTL = 2  # etcd's minimum: failover tests wait TTL + 2 s at most
# Load through a router is rate-limited: messages of 20 orders, this many a second per client.
# Not as fast as the cluster goes: the durable-record checker replays every command through
# the reference matcher, whose cost grows with the book, so the flow is kept bounded.
MESSAGES_PER_S = 50.0


async def rated_load(
    router: str, symbol: str, seconds: float, clients: int, seed: int, tag: str
) -> LoadResult:
    """``clients`` Trade streams of the load generator's flow on ``symbol`` through ``router``
    (~1,000 orders/s each), for ``seconds``."""
    run = f"{tag}{time.monotonic_ns()}"
    flows = [ClientFlow(c, [symbol], seed, run) for c in range(clients)]
    rate = MESSAGES_PER_S * 20 * clients  # orders/s
    return await drive_streams(router, flows, 20, 2, seconds, rate, rate)


@dataclass
class SystemCluster:
    etcd: EtcdServer
    dsn: str
    log_dir: Path
    admin: EtcdRegistry
    redis_nodes: str = ""  # host:port,... : shards publish and routers serve market data
    shards: dict[str, ShardProcess] = field(default_factory=dict)
    routers: dict[str, RouterProcess] = field(default_factory=dict)
    metrics: dict[str, int] = field(default_factory=dict)  # shard id -> Prometheus port

    def _redis_args(self) -> tuple[str, ...]:
        return ("--redis", self.redis_nodes) if self.redis_nodes else ()

    def start_router(self, router_id: str) -> RouterProcess:
        proc = RouterProcess(
            self.etcd.endpoint, self.log_dir, router_id, extra_args=self._redis_args()
        )
        proc.start()
        self.routers[router_id] = proc
        return proc

    def start_shard(self, shard_id: str) -> ShardProcess:
        port = self.metrics.setdefault(shard_id, free_port())
        proc = ShardProcess(
            self.dsn,
            self.log_dir,
            (),
            shard_id=shard_id,
            extra_args=(
                "--etcd",
                self.etcd.endpoint,
                "--lease-ttl",
                str(LEASE_TTL),
                *("--metrics-listen", f"127.0.0.1:{port}"),
                *self._redis_args(),
            ),
        )
        proc.start()
        self.shards[shard_id] = proc
        return proc

    def address(self, shard_id: str) -> str:
        return self.shards[shard_id].target

    async def view(self) -> ClusterView:
        return await self.admin.snapshot()

    async def until(
        self, check: Callable[[ClusterView], bool], timeout: float = 20.0, what: str = ""
    ) -> ClusterView:
        """Poll the registry until ``check`` holds (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        view = ClusterView()
        while time.monotonic() < deadline:
            try:
                view = await self.admin.snapshot()
                if check(view):
                    return view
            except Exception:  # etcd may be down in a fault test: keep polling
                pass
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what or check}; last view: {view}")

    def logs(self) -> str:
        procs: dict[str, ShardProcess | RouterProcess] = {**self.shards, **self.routers}
        return "\n".join(f"--- {name}\n{p.log_tail(30)}" for name, p in procs.items())


def all_active(symbols: tuple[str, ...] = SYMBOLS) -> Callable[[ClusterView], bool]:
    def check(view: ClusterView) -> bool:
        return all(
            s in view.assignments
            and view.assignments[s].state is AssignmentState.ACTIVE
            and view.assignments[s].shard_id in view.shards
            for s in symbols
        )

    return check


@asynccontextmanager
async def system_cluster(
    etcd: EtcdServer,
    dsn: str,
    log_dir: Path,
    shard_ids: tuple[str, ...],
    router_ids: tuple[str, ...] = (),
    redis: RedisCluster | None = None,
) -> AsyncIterator[SystemCluster]:
    await prepare_db(dsn)
    admin = EtcdRegistry([etcd.endpoint])
    await admin.connect()
    nodes = ",".join(f"{h}:{p}" for h, p in redis.startup_nodes) if redis is not None else ""
    cluster = SystemCluster(etcd, dsn, log_dir, admin, nodes)
    try:
        for shard_id in shard_ids:
            cluster.start_shard(shard_id)
        for symbol in SYMBOLS:
            await admin.add_symbol(symbol)
        await cluster.until(all_active(), what="all symbols active")
        for router_id in router_ids:
            cluster.start_router(router_id)
        yield cluster
    finally:
        for router in cluster.routers.values():
            router.stop(timeout=15)
        for proc in cluster.shards.values():
            proc.stop(timeout=15)
        await admin.close()
