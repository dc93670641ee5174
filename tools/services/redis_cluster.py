"""A private Redis Cluster (three or more masters, no replicas) on loopback ports.

Each node keeps its config, `nodes.conf` and log in `base_dir/node-<i>`; nothing is persisted
(no RDB, no AOF): the cluster carries market data, which is republished, not recovered. A node
that was killed comes back with `start_node(i)` on the same port and `nodes.conf`, owning the
same slots (empty). Every node uses an explicit cluster bus port (`cluster-port`), so no
"port + 10000" needs to be free.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import redis

from .ports import HOST, free_port, free_ports
from .process import ServerProcess, ServiceError, find_binary, run_tool, wait_until

log = logging.getLogger(__name__)

MIN_NODES = 3
DEFAULT_NODE_TIMEOUT_MS = 2000  # also sets how long a restarted master waits to rejoin
CREATE_TIMEOUT = 30.0
PROBE_TIMEOUT = 1.0


class RedisCluster:
    """`len(ports)` masters sharing the 16384 slots; `start()` it, connect via `startup_nodes`."""

    def __init__(
        self,
        base_dir: Path,
        ports: list[int] | None = None,
        node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS,
    ) -> None:
        self.base_dir = base_dir.absolute()
        self.ports = list(ports) if ports is not None else free_ports(MIN_NODES)
        if len(self.ports) < MIN_NODES:
            raise ValueError(f"a Redis Cluster needs {MIN_NODES}+ nodes, not {len(self.ports)}")
        self.bus_ports = [free_port() for _ in self.ports]
        self.node_timeout_ms = node_timeout_ms
        self.startup_seconds = 0.0  # of the last start() or start_node()
        self._processes: list[ServerProcess | None] = [None] * len(self.ports)

    def __repr__(self) -> str:
        return f"RedisCluster(ports={self.ports})"

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(HOST, port) for port in self.ports]

    def start(self, timeout: float = 30.0) -> None:
        """Start every node, create the cluster on first start, wait for cluster_state:ok."""
        began = time.monotonic()
        deadline = began + timeout
        for i in range(len(self.ports)):
            if not self.is_node_running(i):
                self._launch(i)
        for i in range(len(self.ports)):
            self._wait_node(i, deadline)
        if not self._created_marker.exists():
            self._create()
        self._wait_cluster_ok(deadline)
        self.startup_seconds = time.monotonic() - began
        log.info("redis cluster on %s ready in %.2fs", self.ports, self.startup_seconds)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL if one hangs)."""
        for process in self._processes:
            if process is not None:
                process.stop()

    def kill_node(self, i: int) -> None:
        """SIGKILL node `i`: its slots are unreachable until `start_node(i)`."""
        process = self._processes[i]
        if process is not None:
            process.kill()

    def start_node(self, i: int, timeout: float = 30.0) -> None:
        """Restart node `i` on its port with its nodes.conf; wait until the cluster is ok."""
        began = time.monotonic()
        deadline = began + timeout
        if not self.is_node_running(i):
            self._launch(i)
        self._wait_node(i, deadline)
        self._wait_cluster_ok(deadline)
        self.startup_seconds = time.monotonic() - began
        log.info("redis node %d (port %d) back in %.2fs", i, self.ports[i], self.startup_seconds)

    def ensure_running(self, timeout: float = 30.0) -> None:
        """Restart any node that is down (e.g. left killed by a test); no-op if all run."""
        if not self.is_running():
            self.start(timeout)

    def is_node_running(self, i: int) -> bool:
        process = self._processes[i]
        return process is not None and process.is_running()

    def is_running(self) -> bool:
        return all(self.is_node_running(i) for i in range(len(self.ports)))

    def flush_all(self) -> None:
        """FLUSHALL on every node (all are masters)."""
        for i in range(len(self.ports)):
            with self._client(i) as client:
                client.flushall()

    @property
    def _created_marker(self) -> Path:
        return self.base_dir / "cluster-created"

    def _node_dir(self, i: int) -> Path:
        return self.base_dir / f"node-{i}"

    def _log_path(self, i: int) -> Path:
        return self._node_dir(i) / "redis.log"

    def _client(self, i: int) -> redis.Redis:
        return redis.Redis(
            HOST,
            self.ports[i],
            socket_timeout=PROBE_TIMEOUT,
            socket_connect_timeout=PROBE_TIMEOUT,
            decode_responses=True,
        )

    def _launch(self, i: int) -> None:
        node_dir = self._node_dir(i)
        node_dir.mkdir(parents=True, exist_ok=True)
        config = node_dir / "redis.conf"
        config.write_text(self._config(i))
        process = ServerProcess(
            f"redis-{self.ports[i]}", [find_binary("redis-server"), config], self._log_path(i)
        )
        process.start(cwd=node_dir)
        self._processes[i] = process

    def _config(self, i: int) -> str:
        settings = {
            "bind": HOST,
            "port": self.ports[i],
            "cluster-enabled": "yes",
            "cluster-port": self.bus_ports[i],
            "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": self.node_timeout_ms,
            "dir": self._node_dir(i),
            "save": '""',
            "appendonly": "no",
            "daemonize": "no",
            "logfile": '""',
        }
        return "".join(f"{key} {value}\n" for key, value in settings.items())

    def _wait_node(self, i: int, deadline: float) -> None:
        def answers_ping() -> bool:
            with self._client(i) as client:
                return bool(client.ping())

        process = self._processes[i]
        alive: Callable[[], bool] | None = process.is_running if process is not None else None
        what = f"redis node {i} (port {self.ports[i]}) start"
        wait_until(answers_ping, _left(deadline), what, self._log_path(i), alive)

    def _create(self) -> None:
        nodes = [f"{HOST}:{port}" for port in self.ports]
        argv: list[str | Path] = [find_binary("redis-cli"), "--cluster", "create", *nodes]
        argv += ["--cluster-replicas", "0", "--cluster-yes"]
        run_tool(argv, self.base_dir / "create.log", CREATE_TIMEOUT, cwd=self.base_dir)
        self._created_marker.touch()

    def _wait_cluster_ok(self, deadline: float) -> None:
        for i in range(len(self.ports)):

            def cluster_ok(i: int = i) -> bool:
                with self._client(i) as client:
                    info = client.execute_command("CLUSTER", "INFO")
                fields = _parse_info(info)
                known = int(fields.get("cluster_known_nodes", "0"))
                return fields.get("cluster_state") == "ok" and known == len(self.ports)

            what = f"redis node {i} (port {self.ports[i]}) cluster_state:ok"
            wait_until(cluster_ok, _left(deadline), what, self._log_path(i))


def _parse_info(info: object) -> dict[str, str]:
    if isinstance(info, dict):
        return {str(k): str(v) for k, v in info.items()}
    if isinstance(info, bytes):
        info = info.decode()
    if not isinstance(info, str):
        raise ServiceError(f"unexpected CLUSTER INFO reply: {info!r}")
    pairs = (line.split(":", 1) for line in info.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())
