"""The router process's configuration: one frozen dataclass, read once in __main__."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from api.auth import AuthConfigError, Credentials, read_token_file
from api.limits import MAX_COMMANDS_PER_MESSAGE
from cluster.registry import DEFAULT_PREFIX
from marketdata.keys import DEFAULT_DEPTH, STALE_AFTER_S
from router.errors import ConfigError

ENV_PREFIX = "SPOTMATCH_ROUTER_"


@dataclass(frozen=True)
class RouterConfig:
    router_id: str
    listen: str  # host:port for gRPC
    etcd_endpoints: tuple[str, ...] = ()
    etcd_prefix: str = DEFAULT_PREFIX
    etcd_timeout: float = 2.0  # every etcd call
    table_start_timeout: float = 10.0  # first read of the assignment table at start-up
    # Per shard link. A shard refuses ExecuteRequests of more than 1,000 commands
    # (api.limits), so a batch never carries more.
    batch_max_commands: int = MAX_COMMANDS_PER_MESSAGE
    batch_max_bytes: int = 4 << 20
    link_inflight_batches: int = 1  # unanswered batches per link; more waits, batches grow (0010)
    link_max_queued: int = 100_000  # unsent commands per link; beyond: RESOURCE_EXHAUSTED
    link_connect_timeout: float = 5.0  # one connection attempt to a shard
    link_write_timeout: float = 10.0  # a shard taking no batch for this long: reconnect
    # Commands for a symbol without a reachable ACTIVE owner (moving, loading, link down)
    # wait in a per-symbol buffer; beyond either bound: UNAVAILABLE / SYMBOL_MOVING.
    buffer_max_commands: int = 10_000
    buffer_max_seconds: float = 5.0
    # A symbol that changed owner waits (buffered) at most this long for its old owner's
    # release marker, behind which that owner's last reports of it arrive (handovers.py).
    handover_wait: float = 1.0
    # A cancel-on-disconnect waits this long for its symbol's owner instead: a failover
    # (lease TTL, at most 30 s, then the new owner's load) may outlast buffer_max_seconds,
    # and a gone client's orders must not be left resting because it did.
    protective_wait: float = 45.0
    request_timeout: float = 10.0  # deadline of commands whose caller set none
    answer_grace: float = 5.0  # past a sent command's deadline, wait this long for its answer
    table_refresh_timeout: float = 2.0  # the re-read after a NOT_OWNER answer
    max_message_bytes: int = 16 << 20
    stream_inflight: int = 64  # requests in flight per Trade stream
    stream_write_timeout: float = 10.0  # a Trade or market data reader this slow is cut off
    shutdown_grace: float = 10.0
    # Market data (router/market_data.py). No Redis nodes: GetOrderBook asks the shards and
    # StreamMarketData is UNAVAILABLE.
    redis_nodes: tuple[str, ...] = ()
    redis_timeout: float = 1.0  # every Redis call (connect, GET, SSUBSCRIBE, read)
    redis_max_connections: int = 1_000  # per Redis node: GETs + one per streamed symbol
    md_default_depth: int = 10  # levels per side when a request says 0 (the shard's default)
    md_max_depth: int = DEFAULT_DEPTH  # the depth shards publish; deeper requests are capped
    md_stale_after: float = STALE_AFTER_S  # an older cached snapshot is not served as fresh
    md_queue_max: int = 10_000  # updates waiting per stream; beyond: RESOURCE_EXHAUSTED
    md_batch_max: int = 256  # updates per StreamMarketDataResponse
    md_retry_max: float = 2.0  # cap of the reconnect backoff of a symbol feed
    md_audit_interval: float = STALE_AFTER_S  # how often a feed re-reads its snapshot
    # Authentication (api/auth.py, decision 0018). No credentials: every caller may trade
    # every account (a development cluster; logged at start). The cluster token is what
    # this router presents to shards.
    credentials: Credentials | None = field(default=None, repr=False)
    cluster_token: str = field(default="", repr=False)
    metrics_listen: str = ""  # host:port of the Prometheus endpoint; "" = no metrics

    def __post_init__(self) -> None:
        if not 1 <= self.batch_max_commands <= MAX_COMMANDS_PER_MESSAGE:
            raise ConfigError(f"batch_max_commands must be 1-{MAX_COMMANDS_PER_MESSAGE}")
        if self.batch_max_bytes >= self.max_message_bytes:
            raise ConfigError("batch_max_bytes must be below max_message_bytes")
        if min(self.link_inflight_batches, self.stream_inflight) < 1:
            raise ConfigError("in-flight bounds must be at least 1")
        if self.handover_wait < 0:
            raise ConfigError("handover_wait must not be negative")
        if min(self.link_max_queued, self.buffer_max_commands) < 0:
            raise ConfigError("queue bounds must not be negative")
        if not 1 <= self.md_default_depth <= self.md_max_depth:
            raise ConfigError("md_default_depth must be 1-md_max_depth")
        if min(self.md_queue_max, self.md_batch_max, self.redis_max_connections) < 1:
            raise ConfigError("market data bounds must be at least 1")
        for node in self.redis_nodes:
            host, _, port = node.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"redis node {node!r} is not host:port")


# flag, environment variable, default, help (the env variable and default are appended)
_ARGUMENTS: tuple[tuple[str, str, str | int | float, str], ...] = (
    ("--router-id", f"{ENV_PREFIX}ID", "router-1",
     "this router's id, sent to shards; give each router its own (shards hold the system"
     " cancels a router missed under its id)"),
    ("--listen", f"{ENV_PREFIX}LISTEN", "127.0.0.1:7001",
     "gRPC listen address of OrderGatewayService"),
    ("--etcd", "SPOTMATCH_ETCD", "",
     "etcd endpoints host:port,... holding the cluster's assignment table (required)"),
    ("--etcd-prefix", "SPOTMATCH_ETCD_PREFIX", DEFAULT_PREFIX, "key prefix of the cluster"),
    ("--batch-max", f"{ENV_PREFIX}BATCH_MAX", MAX_COMMANDS_PER_MESSAGE,
     "max commands per batch sent to a shard (1-1000: shards refuse more)"),
    ("--batch-max-bytes", f"{ENV_PREFIX}BATCH_MAX_BYTES", 4 << 20,
     "max bytes per batch sent to a shard"),
    ("--link-inflight", f"{ENV_PREFIX}LINK_INFLIGHT", RouterConfig.link_inflight_batches,
     "unanswered batches per shard link; 2 lets one busy shard match while it commits"),
    ("--link-queue", f"{ENV_PREFIX}LINK_QUEUE", 100_000,
     "max unsent commands per shard link; beyond it callers get RESOURCE_EXHAUSTED"),
    ("--buffer-max", f"{ENV_PREFIX}BUFFER_MAX", 10_000,
     "max commands buffered per symbol while it has no reachable owner (moving)"),
    ("--buffer-seconds", f"{ENV_PREFIX}BUFFER_SECONDS", 5.0,
     "max seconds a command waits for a moving symbol; then UNAVAILABLE / SYMBOL_MOVING"),
    ("--handover-wait", f"{ENV_PREFIX}HANDOVER_WAIT", RouterConfig.handover_wait,
     "max seconds a symbol that changed owner waits for the old owner to confirm it let go"
     " (its last reports of the symbol come first)"),
    ("--cancel-wait", f"{ENV_PREFIX}CANCEL_WAIT", RouterConfig.protective_wait,
     "max seconds a cancel-on-disconnect waits for its symbol's owner (moving, failing over)"),
    ("--request-timeout", f"{ENV_PREFIX}REQUEST_TIMEOUT", 10.0,
     "deadline in seconds of commands whose caller set none"),
    ("--max-message-bytes", f"{ENV_PREFIX}MAX_MESSAGE_BYTES", 16 << 20,
     "max gRPC message size, both directions"),
    ("--stream-inflight", f"{ENV_PREFIX}STREAM_INFLIGHT", 64,
     "requests in flight per Trade stream before the router stops reading it"),
    ("--stream-write-timeout", f"{ENV_PREFIX}STREAM_WRITE_TIMEOUT", 10.0,
     "a Trade or StreamMarketData stream whose reader stalls a write this many seconds is"
     " cut off"),
    ("--redis", "SPOTMATCH_REDIS", "",
     "Redis Cluster nodes host:port,... holding market data (optional: without it the"
     " shards answer GetOrderBook and StreamMarketData is unavailable)"),
    ("--redis-timeout", f"{ENV_PREFIX}REDIS_TIMEOUT", 1.0,
     "seconds allowed to every Redis call before market data degrades"),
    ("--md-queue", f"{ENV_PREFIX}MD_QUEUE", 10_000,
     "market data updates waiting per stream; beyond it the stream ends RESOURCE_EXHAUSTED"),
    ("--credentials", f"{ENV_PREFIX}CREDENTIALS", "",
     "credentials file: client token hashes and the accounts each may trade (see"
     " `spotmatch auth --help`); without it every caller may trade every account"),
    ("--cluster-token-file", "SPOTMATCH_CLUSTER_TOKEN_FILE", "",
     "file holding the cluster token this router presents to shards (when they require one)"),
    ("--metrics-listen", f"{ENV_PREFIX}METRICS_LISTEN", "",
     "host:port to serve Prometheus metrics on, /metrics (default: none)"),
)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, variable, default, text in _ARGUMENTS:
        kind = type(default)
        value = os.environ.get(variable)
        shown = f"; default {default}" if default != "" else ""
        parser.add_argument(
            flag,
            type=kind,
            default=default if value is None else kind(value),
            help=f"{text} (env {variable}{shown})",
        )


def from_args(args: argparse.Namespace) -> RouterConfig:
    endpoints = tuple(e.strip() for e in args.etcd.split(",") if e.strip())
    if not endpoints:
        raise SystemExit("spotmatch router: --etcd (or SPOTMATCH_ETCD) is required")
    try:
        return RouterConfig(
            router_id=args.router_id,
            listen=args.listen,
            etcd_endpoints=endpoints,
            etcd_prefix=args.etcd_prefix,
            batch_max_commands=args.batch_max,
            batch_max_bytes=args.batch_max_bytes,
            link_inflight_batches=args.link_inflight,
            link_max_queued=args.link_queue,
            buffer_max_commands=args.buffer_max,
            buffer_max_seconds=args.buffer_seconds,
            handover_wait=args.handover_wait,
            protective_wait=args.cancel_wait,
            request_timeout=args.request_timeout,
            max_message_bytes=args.max_message_bytes,
            stream_inflight=args.stream_inflight,
            stream_write_timeout=args.stream_write_timeout,
            redis_nodes=tuple(n.strip() for n in args.redis.split(",") if n.strip()),
            redis_timeout=args.redis_timeout,
            md_queue_max=args.md_queue,
            credentials=Credentials.load(Path(args.credentials)) if args.credentials else None,
            cluster_token=read_token_file(Path(args.cluster_token_file))
            if args.cluster_token_file
            else "",
            metrics_listen=args.metrics_listen,
        )
    except (ConfigError, AuthConfigError) as exc:
        raise SystemExit(f"spotmatch router: {exc}") from None
