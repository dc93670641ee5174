"""The shard process's configuration: one frozen dataclass, read once in __main__."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from api.auth import AuthConfigError, Credentials, read_token_file
from cluster.registry import DEFAULT_LEASE_TTL, DEFAULT_PREFIX
from marketdata.keys import DEFAULT_DEPTH
from shard.gc_policy import YOUNG_THRESHOLD
from shard.pipeline import BatchCaps

ENV_PREFIX = "SPOTMATCH_SHARD_"


@dataclass(frozen=True)
class ShardConfig:
    shard_id: str
    listen: str  # host:port for gRPC
    pg_dsn: str
    symbols: tuple[str, ...]  # owned symbols until etcd assignments replace this
    pool_min: int = 2
    pool_max: int = 8
    caps: BatchCaps = field(default_factory=BatchCaps)
    etcd_endpoints: tuple[str, ...] = ()  # cluster mode when given
    etcd_prefix: str = DEFAULT_PREFIX
    etcd_timeout: float = 2.0  # every etcd call
    lease_ttl: int = DEFAULT_LEASE_TTL  # membership lease, seconds
    controller: bool = True  # campaign for the controller role (cluster mode)
    advertise_host: str = ""  # host routers use to reach us (default: the listen host)
    max_message_bytes: int = 16 << 20
    stream_inflight: int = 64  # requests in flight per Execute/Trade stream
    stream_write_timeout: float = 10.0  # a reader this slow is cut off (RESOURCE_EXHAUSTED)
    shutdown_grace: float = 10.0
    pg_timeout: float = 10.0  # connect and pooled-connection waits
    gc_freeze_interval: float = 1.0  # seconds; 0 = never (see shard/gc_policy.py)
    gc_young_threshold: int = YOUNG_THRESHOLD  # allocations per young GC pass; 0 = Python's
    redis_nodes: tuple[str, ...] = ()  # Redis Cluster startup nodes: publish market data
    md_depth: int = DEFAULT_DEPTH  # levels per side in published snapshots and deltas
    redis_timeout: float = 2.0  # one round of market-data writes; each Redis connect/read
    # Authentication (api/auth.py, decision 0018). The cluster token is what routers present
    # (ShardService accepts nothing else); credentials are shard-aware clients' tokens for
    # OrderGatewayService. Neither: the shard serves anyone (logged at start).
    cluster_token: str = field(default="", repr=False)
    credentials: Credentials | None = field(default=None, repr=False)
    metrics_listen: str = ""  # host:port of the Prometheus endpoint; "" = no metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ
    parser.add_argument(
        "--shard-id",
        default=env.get(f"{ENV_PREFIX}ID", "shard-1"),
        help="this shard's id (env SPOTMATCH_SHARD_ID; default shard-1)",
    )
    parser.add_argument(
        "--listen",
        default=env.get(f"{ENV_PREFIX}LISTEN", "127.0.0.1:7101"),
        help="gRPC listen address (env SPOTMATCH_SHARD_LISTEN)",
    )
    parser.add_argument(
        "--pg-dsn",
        default=env.get("SPOTMATCH_PG_DSN", ""),
        help="PostgreSQL connection string (env SPOTMATCH_PG_DSN)",
    )
    parser.add_argument(
        "--symbols",
        default=env.get(f"{ENV_PREFIX}SYMBOLS", ""),
        help="comma-separated symbols this shard owns (env SPOTMATCH_SHARD_SYMBOLS)",
    )
    parser.add_argument(
        "--pool-max",
        type=int,
        default=int(env.get(f"{ENV_PREFIX}POOL_MAX", "8")),
        help="max Postgres connections; at least one per batch in flight (3) plus two for"
        " lookups and reloads (default 8)",
    )
    parser.add_argument(
        "--batch-max",
        type=int,
        default=int(env.get(f"{ENV_PREFIX}BATCH_MAX", "4096")),
        help="max commands per committed batch (default 4096)",
    )
    parser.add_argument(
        "--etcd",
        default=env.get("SPOTMATCH_ETCD", ""),
        help="etcd endpoints host:port,... : join a cluster and follow its assignments"
        " instead of --symbols (env SPOTMATCH_ETCD)",
    )
    parser.add_argument(
        "--etcd-prefix",
        default=env.get("SPOTMATCH_ETCD_PREFIX", DEFAULT_PREFIX),
        help=f"key prefix of the cluster in etcd (default {DEFAULT_PREFIX})",
    )
    parser.add_argument(
        "--lease-ttl",
        type=int,
        default=int(env.get(f"{ENV_PREFIX}LEASE_TTL", str(DEFAULT_LEASE_TTL))),
        help="membership lease in seconds, 2-30; failover starts this long after a crash"
        f" (default {DEFAULT_LEASE_TTL})",
    )
    parser.add_argument(
        "--no-controller",
        action="store_true",
        default=env.get(f"{ENV_PREFIX}NO_CONTROLLER", "") == "1",
        help="do not campaign for the controller role (run `spotmatch controller` instead)",
    )
    parser.add_argument(
        "--gc-freeze-interval",
        type=float,
        default=float(env.get(f"{ENV_PREFIX}GC_FREEZE_INTERVAL", "1")),
        help="seconds between freezing the objects that survived GC (keeps full GC passes"
        " over large books short; 0 = never; default 1)",
    )
    parser.add_argument(
        "--gc-young-threshold",
        type=int,
        default=int(env.get(f"{ENV_PREFIX}GC_YOUNG_THRESHOLD", str(YOUNG_THRESHOLD))),
        help="allocations between young GC passes (fewer passes over the batches in flight;"
        f" 0 = Python's default of 700; default {YOUNG_THRESHOLD})",
    )
    parser.add_argument(
        "--redis",
        default=env.get("SPOTMATCH_REDIS", ""),
        help="Redis Cluster nodes host:port,... : publish market data after each commit"
        " (env SPOTMATCH_REDIS; default: no market data)",
    )
    parser.add_argument(
        "--md-depth",
        type=int,
        default=int(env.get(f"{ENV_PREFIX}MD_DEPTH", str(DEFAULT_DEPTH))),
        help=f"price levels per side in published market data (default {DEFAULT_DEPTH})",
    )
    parser.add_argument(
        "--cluster-token-file",
        default=env.get("SPOTMATCH_CLUSTER_TOKEN_FILE", ""),
        help="file holding the cluster token: ShardService then serves only callers that"
        " present it (routers), and so does OrderGatewayService for clients without"
        " --credentials (env SPOTMATCH_CLUSTER_TOKEN_FILE)",
    )
    parser.add_argument(
        "--credentials",
        default=env.get(f"{ENV_PREFIX}CREDENTIALS", ""),
        help="credentials file of shard-aware clients (token hashes and their accounts, see"
        " `spotmatch auth --help`); needs --cluster-token-file (env SPOTMATCH_SHARD_CREDENTIALS)",
    )
    parser.add_argument(
        "--metrics-listen",
        default=env.get(f"{ENV_PREFIX}METRICS_LISTEN", ""),
        help="host:port to serve Prometheus metrics on, /metrics (env"
        " SPOTMATCH_SHARD_METRICS_LISTEN; default: none)",
    )
    parser.add_argument(
        "--advertise-host",
        default=env.get(f"{ENV_PREFIX}ADVERTISE_HOST", ""),
        help="host routers use to reach this shard (default: the --listen host)",
    )


def from_args(args: argparse.Namespace) -> ShardConfig:
    if not args.pg_dsn:
        raise SystemExit("spotmatch shard: --pg-dsn (or SPOTMATCH_PG_DSN) is required")
    symbols = tuple(s.strip() for s in args.symbols.split(",") if s.strip())
    md_depth = max(1, args.md_depth)
    if args.credentials and not args.cluster_token_file:
        raise SystemExit("spotmatch shard: --credentials needs --cluster-token-file (routers)")
    try:
        token = read_token_file(Path(args.cluster_token_file)) if args.cluster_token_file else ""
        credentials = Credentials.load(Path(args.credentials)) if args.credentials else None
    except AuthConfigError as exc:
        raise SystemExit(f"spotmatch shard: {exc}") from None
    return ShardConfig(
        shard_id=args.shard_id,
        listen=args.listen,
        pg_dsn=args.pg_dsn,
        symbols=symbols,
        pool_max=max(BatchCaps.max_inflight_batches + 2, args.pool_max),
        # The committed views are what is published: keep at least md_depth levels in them.
        caps=BatchCaps(max_commands=args.batch_max, book_depth=max(BatchCaps.book_depth, md_depth)),
        etcd_endpoints=tuple(e for e in args.etcd.split(",") if e),
        etcd_prefix=args.etcd_prefix,
        lease_ttl=min(max(args.lease_ttl, 2), 30),
        controller=not args.no_controller,
        advertise_host=args.advertise_host,
        gc_freeze_interval=max(0.0, args.gc_freeze_interval),
        gc_young_threshold=max(0, args.gc_young_threshold),
        redis_nodes=tuple(n.strip() for n in args.redis.split(",") if n.strip()),
        md_depth=md_depth,
        cluster_token=token,
        credentials=credentials,
        metrics_listen=args.metrics_listen,
    )
