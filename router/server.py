"""The router process: assignment table, shard links, OrderGatewayService, shutdown.

Start: read the assignment table (the registry must answer once), open one link per live
shard, serve. After that the router keeps trading on its last view if etcd goes away (the
table retries in the background). Shutdown: health NOT_SERVING, stop taking calls and let
in-flight ones finish (grace), then close the links.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from api.auth import Authenticator
from api.decoding import DecodeGuard
from cluster.etcd import EtcdRegistry
from cluster.model import ClusterView
from cluster.registry import Registry
from cluster.table import ClusterTable
from matching.v1 import gateway_pb2, gateway_pb2_grpc
from router.config import RouterConfig
from router.gateway import RouterGateway
from router.link import ShardLink, grpc_options
from router.links import LinkSet
from router.market_data import MarketData
from router.md_wire import EncodedResponses
from router.metrics import RouterMetrics
from router.routing import Dispatcher
from telemetry import server_interceptors, setup_tracing
from telemetry.metrics import MetricsEndpoint

log = logging.getLogger(__name__)

SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["OrderGatewayService"].full_name


class RouterNode:
    def __init__(self, config: RouterConfig, registry: Registry) -> None:
        self.config = config
        self.table = ClusterTable(registry, name=f"router-{config.router_id}")
        self.links = LinkSet(
            config,
            on_ready=lambda _: self.dispatcher.buffers.drain(),
            on_released=self._released,  # the dispatcher, made next, needs the links
        )
        self.dispatcher = Dispatcher(self.table, self.links, config)
        self.market_data = MarketData(config, self.table)
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.gateway: RouterGateway | None = None
        self.port = 0
        self.metrics: RouterMetrics | None = None
        self.metrics_endpoint: MetricsEndpoint | None = None

    async def start(self) -> None:
        await self.table.start(self.config.table_start_timeout)
        self.table.listeners.append(self._on_view)
        self._on_view(self.table.view())
        if not await self.links.wait_ready(self.config.link_connect_timeout):
            log.warning("not every shard link is up yet; their symbols buffer until it is")
        setup_tracing(f"spotmatch-router-{self.config.router_id}")
        credentials = self.config.credentials
        if credentials is None:
            log.warning("no credentials file: every caller may trade every account")
        guard = [] if credentials is None else [Authenticator({SERVICE_NAME: credentials})]
        server = grpc.aio.server(
            options=grpc_options(self.config),
            interceptors=[*guard, DecodeGuard(), EncodedResponses(), *server_interceptors()],
        )
        if self.config.metrics_listen:
            self.metrics = RouterMetrics(self.config.router_id, self.dispatcher, self.links)
        gateway = self.gateway = RouterGateway(
            self.dispatcher, self.links, self.table, self.config, self.market_data, self.metrics
        )
        gateway_pb2_grpc.add_OrderGatewayServiceServicer_to_server(gateway, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, reflection.SERVICE_NAME, health.SERVICE_NAME), server
        )
        self.port = server.add_insecure_port(self.config.listen)
        await server.start()
        self.server = server
        if self.config.metrics_listen:
            self.metrics_endpoint = MetricsEndpoint(self.config.metrics_listen)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("router %s serving on port %d (%d shards)", self.config.router_id, self.port,
                 len(self.links.all()))  # fmt: skip

    def _released(self, link: ShardLink, symbols: list[str]) -> None:
        self.dispatcher.handovers.released(link, symbols)

    def _on_view(self, view: ClusterView) -> None:
        self.links.sync(view.shards)
        self.dispatcher.handovers.observe(view)
        self.dispatcher.buffers.drain()

    async def stop(self) -> None:
        """Graceful: NOT_SERVING, finish in-flight calls, then close the links."""
        await self.health.enter_graceful_shutdown()
        self.market_data.end_streams("router shutting down")  # streams never end by themselves
        if self.server is not None:
            await self.server.stop(grace=self.config.shutdown_grace)
        if self.gateway is not None:
            await self.gateway.drain(self.config.request_timeout)
        self.dispatcher.buffers.fail_all("router shutting down")
        await self.market_data.close()
        await self.table.stop()
        await self.links.close()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()
        if self.metrics is not None:
            self.metrics.close()


async def run(config: RouterConfig) -> None:
    registry = EtcdRegistry(
        config.etcd_endpoints, prefix=config.etcd_prefix, timeout=config.etcd_timeout
    )
    await registry.connect()
    node = RouterNode(config, registry)
    await node.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await node.stop()
    await registry.close()
