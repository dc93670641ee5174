"""A whole spotmatch cluster on loopback, for `spotmatch up`, `make run`, benchmarks and fault
tests: etcd, PostgreSQL, a 3-node Redis Cluster, N shards in cluster mode and M routers.

Everything lives under one run directory (data, logs, `cluster.json`, `cluster.env`). Each
start begins from empty data: a fresh etcd starts its revisions (the fencing epochs) from 1, so
keeping the old Postgres, whose `symbol_owner` epochs came from the old etcd, would fence every
shard forever. The state file is rewritten after each component starts, so `spotmatch down`
can clean up even after an `up` that was killed half-way.

Use it from Python::

    cluster = LocalCluster(Path(".run/spotmatch"), shards=3, routers=2, symbols=["BTC-USD"])
    cluster.start()            # raises LauncherError (with the failing log's tail) on failure
    cluster.shard(0).signal(signal.SIGSTOP)
    cluster.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from api.auth import write_token_file
from cluster.registry import DEFAULT_LEASE_TTL, DEFAULT_PREFIX
from tools.cluster import seed
from tools.cluster.errors import AlreadyRunning, LauncherError
from tools.cluster.processes import NodeProcess, is_same_process, record, stop_recorded
from tools.cluster.state import (
    ClusterState,
    ProcessRecord,
    read_state,
    remove_state,
    write_state,
)
from tools.services import EtcdServer, PostgresServer, RedisCluster, ServiceError
from tools.services.ports import HOST, free_port
from tools.services.process import untrack

log = logging.getLogger(__name__)
T = TypeVar("T")

DATABASE = "spotmatch"
MARKER = ".spotmatch-run-dir"  # only a directory carrying it is ever wiped
DATA_DIRS = ("etcd", "postgres", "redis", "logs")
CLUSTER_TOKEN_FILE = "cluster.token"
START_TIMEOUT = 120.0
# `down` by recorded pid: (kinds, signal, grace). Routers first, then shards (they commit what
# is in flight and revoke their leases, so they need Postgres and etcd), then the services.
# Postgres takes SIGINT as "fast shutdown"; SIGTERM would wait for every client to leave.
STOP_ORDER: tuple[tuple[frozenset[str], int, float], ...] = (
    (frozenset({"router"}), signal.SIGTERM, 20.0),
    (frozenset({"shard"}), signal.SIGTERM, 20.0),
    (frozenset({"redis", "etcd"}), signal.SIGTERM, 10.0),
    (frozenset({"postgres"}), signal.SIGINT, 30.0),
)


class LocalCluster:
    def __init__(
        self,
        run_dir: Path,
        shards: int = 3,
        routers: int = 2,
        *,
        symbols: Sequence[str] = (),
        etcd_prefix: str = DEFAULT_PREFIX,
        lease_ttl: int = DEFAULT_LEASE_TTL,
        shard_args: Sequence[str] = (),
        router_args: Sequence[str] = (),
    ) -> None:
        if shards < 1 or routers < 0:
            raise LauncherError("a cluster needs at least one shard (and zero or more routers)")
        self.run_dir = run_dir.absolute()
        self.symbols = tuple(symbols)
        self.etcd_prefix = etcd_prefix
        self.lease_ttl = lease_ttl
        self._n_shards, self._n_routers = shards, routers
        self._shard_args, self._router_args = tuple(shard_args), tuple(router_args)
        self.cluster_token_file = self.run_dir / CLUSTER_TOKEN_FILE
        self.etcd: EtcdServer | None = None
        self.postgres: PostgresServer | None = None
        self.redis: RedisCluster | None = None
        self.pg_dsn = ""
        self._shards: list[NodeProcess] = []
        self._routers: list[NodeProcess] = []
        self._records: list[ProcessRecord] = []

    # -- what clients need ------------------------------------------------------------------

    @property
    def router_addresses(self) -> list[str]:
        return [r.address for r in self._routers]

    @property
    def shard_addresses(self) -> list[str]:
        return [s.address for s in self._shards]

    @property
    def etcd_endpoint(self) -> str:
        return self.etcd.endpoint if self.etcd is not None else ""

    @property
    def redis_nodes(self) -> list[str]:
        return [f"{h}:{p}" for h, p in self.redis.startup_nodes] if self.redis else []

    def shard(self, i: int) -> NodeProcess:
        """Shard number ``i`` (0-based; its id is shard-<i+1>): signal it, kill it, stop it."""
        return self._shards[i]

    def router(self, i: int) -> NodeProcess:
        """Router number ``i`` (0-based; its id is router-<i+1>)."""
        return self._routers[i]

    def restart(self, node: NodeProcess, timeout: float = 60.0) -> None:
        """Start a shard or router again after a test killed or stopped it (same id, same
        port), wait until it is SERVING, and record its new pid for `spotmatch down`."""
        node.stop()
        node.spawn()
        self._records = [r for r in self._records if r.name != node.name]
        self._records.append(node.record())
        self._save()
        node.wait_serving(time.monotonic() + timeout)

    def state(self) -> ClusterState:
        return ClusterState(
            run_dir=str(self.run_dir),
            etcd_endpoint=self.etcd_endpoint,
            etcd_prefix=self.etcd_prefix,
            pg_dsn=self.pg_dsn,
            redis_nodes=self.redis_nodes,
            router_addresses=self.router_addresses,
            shard_addresses=self.shard_addresses,
            processes=list(self._records),
            cluster_token_file=str(self.cluster_token_file),
        )

    # -- start / stop -----------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start everything and wait until it is healthy; on any failure stop what was
        started and raise LauncherError quoting the failing component's log."""
        refuse_if_running(self.run_dir)
        self._prepare_run_dir()
        write_token_file(self.cluster_token_file)  # routers present it, shards require it
        deadline = time.monotonic() + timeout
        try:
            self._start_services(deadline)
            self._start_nodes(self._make_shards(), self._shards, deadline)
            self._wait(seed.wait_members, [s.name for s in self._shards], deadline)
            self._start_nodes(self._make_routers(), self._routers, deadline)
            self._wait(seed.wait_placed, list(self.symbols), deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process this object started: routers, shards, Redis, etcd, Postgres."""
        for nodes in (self._routers, self._shards):
            for node in nodes:
                node.signal(signal.SIGCONT)
                node.signal(signal.SIGTERM)  # all at once; then wait for each
            for node in nodes:
                node.stop()
        for service in (self.redis, self.etcd):
            if service is not None:
                with contextlib.suppress(ServiceError):
                    service.stop()
        if self.postgres is not None:
            with contextlib.suppress(ServiceError):
                self.postgres.stop()
        remove_state(self.run_dir)

    def detach(self) -> None:
        """Let every process outlive this interpreter (stop them later with `stop_cluster`)."""
        for node in (*self._shards, *self._routers):
            node.detach()
        if self.postgres is not None:
            untrack(self.postgres)
        # tools.services kills its servers at interpreter exit; it has no public way to opt
        # out, so reach the ServerProcess objects it registered.
        if self.etcd is not None and self.etcd._process is not None:
            untrack(self.etcd._process)
        if self.redis is not None:
            for process in self.redis._processes:
                if process is not None:
                    untrack(process)

    # -- steps ------------------------------------------------------------------------------

    def _prepare_run_dir(self) -> None:
        marker = self.run_dir / MARKER
        if self.run_dir.exists() and any(self.run_dir.iterdir()) and not marker.exists():
            raise LauncherError(
                f"{self.run_dir} is not empty and was not made by `spotmatch up`: pick another"
                " --run-dir"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        marker.touch()
        for name in DATA_DIRS:
            shutil.rmtree(self.run_dir / name, ignore_errors=True)
        (self.run_dir / "logs").mkdir()

    def _start_services(self, deadline: float) -> None:
        self.etcd = etcd = EtcdServer(self.run_dir / "etcd")
        _service("etcd", lambda: etcd.start(_left(deadline)))
        self._add_record("etcd", "etcd", etcd.pid, etcd.log_path, etcd.endpoint)
        self.postgres = pg = PostgresServer(self.run_dir / "postgres")
        _service("postgres", lambda: pg.start(_left(deadline)))
        self._add_record("postgres", "postgres", pg.pid, pg.log_path, f"{HOST}:{pg.port}")
        self.pg_dsn = _service("postgres", lambda: pg.create_database(DATABASE))
        asyncio.run(seed.prepare(self.pg_dsn, self._etcd(), self.symbols))
        self.redis = redis = RedisCluster(self.run_dir / "redis")
        _service("redis", lambda: redis.start(_left(deadline)))
        for i, port in enumerate(redis.ports):
            log_path = redis.base_dir / f"node-{i}" / "redis.log"
            pid = seed.redis_pid(port)
            self._add_record(f"redis-{i}", "redis", pid, log_path, f"{HOST}:{port}")

    def _make_shards(self) -> list[NodeProcess]:
        nodes = []
        for i in range(1, self._n_shards + 1):
            address = f"{HOST}:{free_port()}"
            args = ["--shard-id", f"shard-{i}", "--listen", address, "--pg-dsn", self.pg_dsn]
            args += ["--etcd", self.etcd_endpoint, "--etcd-prefix", self.etcd_prefix]
            args += ["--redis", ",".join(self.redis_nodes)]  # shards publish market data
            args += ["--lease-ttl", str(self.lease_ttl), *self._auth_args, *self._shard_args]
            nodes.append(NodeProcess(f"shard-{i}", "shard", "shard", args, address, self._logs))
        return nodes

    def _make_routers(self) -> list[NodeProcess]:
        nodes = []
        for i in range(1, self._n_routers + 1):
            address = f"{HOST}:{free_port()}"
            args = ["--router-id", f"router-{i}", "--listen", address]
            args += ["--etcd", self.etcd_endpoint, "--etcd-prefix", self.etcd_prefix]
            args += ["--redis", ",".join(self.redis_nodes), *self._auth_args, *self._router_args]
            nodes.append(NodeProcess(f"router-{i}", "router", "router", args, address, self._logs))
        return nodes

    def _start_nodes(
        self, nodes: list[NodeProcess], started: list[NodeProcess], deadline: float
    ) -> None:
        for node in nodes:  # all at once: Python start-up dominates, and there are 2 cores
            node.spawn()
            started.append(node)
            self._records.append(node.record())
        self._save()
        for node in nodes:
            node.wait_serving(deadline)

    def _wait(self, step: seed.Wait, names: list[str], deadline: float) -> None:
        if names:
            asyncio.run(step(self._etcd(), names, deadline))

    def _add_record(self, name: str, kind: str, pid: int | None, log: Path, addr: str) -> None:
        if pid is None:
            raise LauncherError(f"{name} is not running right after its start; see {log}")
        self._records.append(record(name, kind, pid, log, addr))
        self._save()

    def _save(self) -> None:
        write_state(self.run_dir, self.state())

    def _etcd(self) -> seed.EtcdTarget:
        return seed.EtcdTarget(self.etcd_endpoint, self.etcd_prefix)

    @property
    def _auth_args(self) -> list[str]:
        return ["--cluster-token-file", str(self.cluster_token_file)]

    @property
    def _logs(self) -> Path:
        return self.run_dir / "logs"


def refuse_if_running(run_dir: Path) -> None:
    """AlreadyRunning if a cluster recorded in ``run_dir`` still has a live process."""
    state = read_state(run_dir)
    if state is None:
        return
    alive = [p for p in state.processes if is_same_process(p)]
    if alive:
        where = ", ".join(state.router_addresses) or state.etcd_endpoint
        raise AlreadyRunning(
            f"a cluster is already running in {run_dir} ({where}; {len(alive)} processes);"
            f" stop it first with `spotmatch down --run-dir {run_dir}`"
        )
    log.info("removing the state of a cluster that is no longer running")
    remove_state(run_dir)


def stop_cluster(run_dir: Path) -> list[str] | None:
    """Stop the processes recorded in ``run_dir`` (only those, and only if each pid is still
    the recorded process); None if nothing is recorded. Returns what happened, per process."""
    state = read_state(run_dir)
    if state is None:
        return None
    notes: list[str] = []
    for kinds, sig, grace in STOP_ORDER:
        records = [p for p in state.processes if p.kind in kinds]
        notes += stop_recorded(records, sig, grace)
    remove_state(run_dir)
    return notes


def _service(component: str, start: Callable[[], T]) -> T:
    try:
        return start()
    except ServiceError as exc:
        raise LauncherError(f"{component} failed: {exc}") from exc


def _left(deadline: float) -> float:
    return max(1.0, deadline - time.monotonic())
