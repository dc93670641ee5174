"""The shard process: Postgres pool, symbol takeover, pipeline, gRPC server, shutdown.

Start order follows DESIGN section 4: migrate, then for each owned symbol raise its epoch in
Postgres (fence), load its book, and only then serve. Standalone, the owned symbols come from
configuration; in a cluster (etcd endpoints given, or a registry passed in) the shard registers
and follows the assignment table (shard/cluster_member.py), and may run the controller.
Shutdown: health NOT_SERVING, leave the cluster, let accepted batches commit, close.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from psycopg_pool import AsyncConnectionPool

from api.auth import CLUSTER, Authenticator, Credentials
from api.decoding import DecodeGuard
from cluster.controller import Controller, ControllerConfig
from cluster.etcd import EtcdRegistry
from cluster.registry import Registry
from cluster.table import ClusterTable
from matching.v1 import gateway_pb2, gateway_pb2_grpc, shard_pb2, shard_pb2_grpc
from persistence.claims import Claimed, Key, claim_client_order_ids
from persistence.errors import PersistenceError, translated
from persistence.loader import list_symbols
from persistence.migrate import migrate
from persistence.placements import find_order
from persistence.writer import BatchWriter, configure_connection
from shard import gc_policy
from shard.admission import Admission
from shard.cluster_member import ClusterMember
from shard.config import ShardConfig
from shard.custody import SymbolCustody
from shard.engine import MatchingEngine
from shard.errors import Overloaded, ShardError
from shard.gateway import GatewayServicer
from shard.idempotency import IdempotencyIndex
from shard.metrics import ShardMetrics
from shard.ownership import Ownership, SymbolState
from shard.pipeline import Pipeline
from shard.publisher import MarketDataPublisher
from shard.service import ExecuteServicer
from shard.streams import Subscribers
from telemetry import server_interceptors, setup_tracing
from telemetry.metrics import MetricsEndpoint

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    shard_pb2.DESCRIPTOR.services_by_name["ShardService"].full_name,
    gateway_pb2.DESCRIPTOR.services_by_name["OrderGatewayService"].full_name,
)


def _authenticator(config: ShardConfig) -> list[Authenticator]:
    """ShardService for the cluster token only; OrderGatewayService for it and the
    shard-aware clients' credentials (decision 0018). No token: open, and logged."""
    if not config.cluster_token:
        if config.credentials is not None:
            raise ShardError("client credentials need a cluster token (routers present it)")
        log.warning("no cluster token: any caller may use this shard, for every account")
        return []
    cluster = Credentials.of_token(config.cluster_token, CLUSTER)
    clients = cluster if config.credentials is None else cluster | config.credentials
    shard_service, gateway_service = SERVICE_NAMES
    return [Authenticator({shard_service: cluster, gateway_service: clients})]


_RELOAD_BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0)
# The pool is the writer's first: its batches (three open at once) and the client order id
# lookup each take a connection. Other users are capped so that none of them can make a
# batch wait: a flood of GetOrder calls, or takes and reloads of many symbols at once
# (shard.custody.TAKES_AT_ONCE).
READS_AT_ONCE = 2  # GetOrder lookups holding a connection together
READS_QUEUED = 64  # ... and waiting for one; past it GetOrder answers RESOURCE_EXHAUSTED


def grpc_options(config: ShardConfig) -> list[tuple[str, int]]:
    """Message limits and keepalive; routers use the same keepalive values."""
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


class ShardNode:
    def __init__(self, config: ShardConfig, registry: Registry | None = None) -> None:
        self.config = config
        self._registry = registry
        self.engine = MatchingEngine()
        self.ownership = Ownership()
        self.pool = AsyncConnectionPool(
            config.pg_dsn,
            min_size=config.pool_min,
            max_size=config.pool_max,
            open=False,
            configure=configure_connection,
            timeout=config.pg_timeout,
            # psycopg prepares a statement on its fifth run. Safe because configure_connection
            # forbids sequential scans and hash/merge joins: a generic plan has the shape of a
            # custom one and cannot go stale as tables grow (decision 0009).
            kwargs={"connect_timeout": int(config.pg_timeout)},
        )
        self.subscribers = Subscribers()
        writer = BatchWriter(self.pool, timeout=config.pg_timeout)
        admission = Admission(self.engine, self.ownership, IdempotencyIndex(), self._claim)
        self.metrics = ShardMetrics(config.shard_id) if config.metrics_listen else None
        start = writer.start if self.metrics is None else self.metrics.timed(writer.start)
        self.pipeline = Pipeline(
            self.engine, self.ownership, admission, start, self._reload, config.caps
        )
        if self.metrics is not None:
            self.metrics.watch(self.pipeline, self.ownership, self.subscribers.held)
        self.metrics_endpoint: MetricsEndpoint | None = None
        self.pipeline.after_commit.append(self.subscribers.publish)
        self.publisher: MarketDataPublisher | None = None
        if config.redis_nodes:
            self.publisher = MarketDataPublisher(
                config.redis_nodes,
                self.pipeline.committed_books,
                depth=config.md_depth,
                timeout=config.redis_timeout,
            )
            self.pipeline.after_commit.append(self.publisher.on_commit)
        self.custody = SymbolCustody(
            self.pool,
            self.engine,
            self.ownership,
            self.pipeline,
            config.shard_id,
            self.publisher,
        )
        self.member: ClusterMember | None = None
        self.controller: Controller | None = None
        self._background: list[asyncio.Task[None]] = []
        self._stopped = False
        self._reads = asyncio.Semaphore(READS_AT_ONCE)
        self._reads_waiting = 0  # lookups holding or waiting for one of ``_reads``
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        await migrate(self.config.pg_dsn, self.config.pg_timeout)
        await self.pool.open(wait=True, timeout=self.config.pg_timeout)
        async with self.pool.connection() as conn:
            known = {row.symbol for row in await list_symbols(conn)}
        self.ownership.set_known(known)
        if self.publisher is not None:
            self.publisher.start()  # never waits for Redis: a cache down is not a shard down
        for symbol in self.config.symbols:
            await self.custody.take(symbol)
        gc.collect()
        gc.freeze()  # the loaded books are long-lived: keep them out of every GC pass
        gc_policy.tune(self.config.gc_young_threshold)
        if self.config.gc_freeze_interval > 0:
            freezer = gc_policy.freeze_survivors(self.config.gc_freeze_interval)
            self._background.append(asyncio.create_task(freezer))
        self.pipeline.start()
        await self._start_grpc()
        if self.config.metrics_listen:
            self.metrics_endpoint = MetricsEndpoint(self.config.metrics_listen)
        if self._registry is None and self.config.etcd_endpoints:
            etcd = EtcdRegistry(
                self.config.etcd_endpoints,
                prefix=self.config.etcd_prefix,
                timeout=self.config.etcd_timeout,
            )
            await etcd.connect()
            self._registry = etcd
        if self._registry is not None:
            await self._join(self._registry)
        for name in ("", *SERVICE_NAMES):  # ready only once registered (cluster mode)
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def _join(self, registry: Registry) -> None:
        table = ClusterTable(registry, name=f"shard {self.config.shard_id}")
        self.member = ClusterMember(
            registry, table, self.custody, self.address, self.config.lease_ttl
        )
        await self.member.start(self.config.etcd_timeout * 5)
        if self.config.controller:
            self.controller = Controller(
                registry,
                table,
                ControllerConfig(self.config.shard_id, lease_ttl=self.config.lease_ttl),
            )
            self._background.append(asyncio.create_task(self.controller.run()))

    @property
    def address(self) -> str:
        """The address other processes use to reach this shard."""
        host = (self.config.advertise_host or self.config.listen.rsplit(":", 1)[0]).strip("[]")
        return f"{host}:{self.port}"

    async def _start_grpc(self) -> None:
        setup_tracing(f"spotmatch-shard-{self.config.shard_id}")
        server = grpc.aio.server(
            options=grpc_options(self.config),
            interceptors=[*_authenticator(self.config), DecodeGuard(), *server_interceptors()],
        )
        timers = self.metrics.request_timers() if self.metrics is not None else {}
        shard_pb2_grpc.add_ShardServiceServicer_to_server(
            ExecuteServicer(self.pipeline, self.subscribers, self.config, timers), server
        )
        gateway_pb2_grpc.add_OrderGatewayServiceServicer_to_server(
            GatewayServicer(self.pipeline, self.subscribers, self.config, self._find_order, timers),
            server,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, reflection.SERVICE_NAME, health.SERVICE_NAME), server
        )
        self.port = server.add_insecure_port(self.config.listen)
        await server.start()
        self.server = server
        log.info(
            "shard %s serving on port %d: %s",
            self.config.shard_id,
            self.port,
            ", ".join(self.ownership.serving()) or "no symbols",
        )

    async def stop(self) -> None:
        """Graceful: NOT_SERVING, finish and commit in-flight batches, stop. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        await self.health.enter_graceful_shutdown()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.pipeline.stop(self.config.shutdown_grace)
        if self.publisher is not None:  # after the last commit: publish it, bounded
            await self.publisher.stop(min(1.0, self.config.shutdown_grace))
        if self.member is not None:
            await self.member.stop()  # after the last commit: failover fences nothing we owe
        if self.server is not None:
            # Everything accepted has committed and been answered; router Execute streams
            # never end by themselves, so give the last writes a moment, not the full grace.
            await self.server.stop(grace=min(1.0, self.config.shutdown_grace))
        await self.pool.close()
        if self._registry is not None:
            await self._registry.close()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()
        if self.metrics is not None:
            self.metrics.close()

    async def _claim(self, wanted: dict[Key, str]) -> Claimed:
        with translated("client order id claim"):
            async with self.pool.connection() as conn:
                return await claim_client_order_ids(conn, wanted)

    async def _find_order(
        self, symbol: str, account: str, order_id: int, client_order_id: str
    ) -> tuple[object, ...] | None:
        """The committed order; Overloaded when too many lookups are already waiting."""
        if self._reads_waiting >= READS_AT_ONCE + READS_QUEUED:
            raise Overloaded("too many order lookups at once; retry")
        self._reads_waiting += 1
        try:
            async with self._reads:
                with translated("order lookup"):
                    async with self.pool.connection() as conn:
                        return await find_order(conn, symbol, account, order_id, client_order_id)
        finally:
            self._reads_waiting -= 1

    async def _reload(self, symbol: str) -> None:
        """After a failed commit: reload the symbol from Postgres, retrying until it works.
        Each attempt reloads the ownership recovering then: one taken again (a newer epoch)
        and failed again while this task backed off has no other reload task."""
        attempt = 0
        while True:
            owned = self.ownership.get(symbol)
            if owned is None or owned.state is not SymbolState.RECOVERING:
                return
            try:
                await self.custody.reload(symbol, owned.epoch)
            except PersistenceError as exc:
                delay = _RELOAD_BACKOFF[min(attempt, len(_RELOAD_BACKOFF) - 1)]
                log.warning(
                    "reload failed (%s); retrying in %.1fs", exc, delay, extra={"symbol": symbol}
                )
                attempt += 1
                await asyncio.sleep(delay)
                continue
            return


async def run(config: ShardConfig) -> None:
    node = ShardNode(config)
    await node.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await node.stop()
