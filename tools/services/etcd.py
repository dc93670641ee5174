"""A private single-member etcd on loopback ports, for tests and the local cluster.

Data and log live under `base_dir`; a restart reuses the data directory on the same ports, so
keys (and revisions) survive it. `pause()`/`resume()` SIGSTOP/SIGCONT the server, for tests of
leases that expire while their owner cannot be reached.
"""

from __future__ import annotations

import json
import logging
import signal
import time
import urllib.request
from pathlib import Path

from .ports import HOST, free_port
from .process import ServerProcess, ServiceError, find_binary, wait_until

log = logging.getLogger(__name__)

MEMBER_NAME = "spotmatch"
HEALTH_TIMEOUT = 1.0
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only


class EtcdServer:
    """One etcd member; `start()` it, connect to `endpoint`, `stop()` it."""

    def __init__(
        self, base_dir: Path, client_port: int | None = None, peer_port: int | None = None
    ) -> None:
        self.base_dir = base_dir.absolute()
        self.client_port = client_port if client_port is not None else free_port()
        self.peer_port = peer_port if peer_port is not None else free_port()
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "etcd.log"
        self.startup_seconds = 0.0  # of the last start()
        self._process: ServerProcess | None = None

    def __repr__(self) -> str:
        return f"EtcdServer(endpoint={self.endpoint!r})"

    @property
    def endpoint(self) -> str:
        """host:port of the client API (gRPC, and the JSON gateway under /v3/)."""
        return f"{HOST}:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.is_running() and self._process is not None else None

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until etcd reports itself healthy (it has a leader); no-op if running."""
        if self.is_running():
            return
        began = time.monotonic()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._process = ServerProcess("etcd", self._argv(), self.log_path)
        self._process.start(cwd=self.base_dir)
        wait_until(
            self._healthy, timeout, f"{self!r} start", self.log_path, self._process.is_running
        )
        self.startup_seconds = time.monotonic() - began
        log.info("etcd on %s ready in %.2fs", self.endpoint, self.startup_seconds)

    def stop(self) -> None:
        """Graceful stop (SIGTERM, then SIGKILL if it hangs); a paused server is resumed first."""
        if self._process is not None:
            self._process.stop()

    def kill(self) -> None:
        """SIGKILL: a crash."""
        if self._process is not None:
            self._process.kill()

    def pause(self) -> None:
        """SIGSTOP: the server stops answering, its connections stay open."""
        self._running_process().send(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after `pause()`."""
        self._running_process().send(signal.SIGCONT)

    def is_running(self) -> bool:
        """Whether the process exists (a paused server is running)."""
        return self._process is not None and self._process.is_running()

    def _running_process(self) -> ServerProcess:
        if self._process is None or not self._process.is_running():
            raise ServiceError(f"{self!r} is not running")
        return self._process

    def _healthy(self) -> bool:
        with _NO_PROXY.open(f"{self.url}/health", timeout=HEALTH_TIMEOUT) as response:
            body = json.loads(response.read())
        return isinstance(body, dict) and body.get("health") == "true"

    def _argv(self) -> list[str | Path]:
        client_url = f"http://{HOST}:{self.client_port}"
        peer_url = f"http://{HOST}:{self.peer_port}"
        return [
            find_binary("etcd"),
            f"--name={MEMBER_NAME}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster={MEMBER_NAME}={peer_url}",
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-outputs=stderr",
        ]
