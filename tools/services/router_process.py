"""A router in its own process (`python -m router`), for fault tests, benchmarks and the
local cluster: start it, wait until its health check says SERVING, signal it, read its log.

The router reads its shards and symbol assignments from etcd (``--etcd``), so start it after
the shards have registered (it buffers commands for a while if they have not yet)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .ports import free_port
from .process import service_error

REPO = Path(__file__).resolve().parents[2]


class RouterProcess:
    def __init__(
        self,
        etcd_endpoints: str,
        log_dir: Path,
        router_id: str = "router-1",
        etcd_prefix: str = "",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.etcd_endpoints, self.router_id = etcd_endpoints, router_id
        self.etcd_prefix = etcd_prefix
        self.extra_args = extra_args
        self.port = free_port()
        self.log_path = log_dir / f"{router_id}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        prefix = ("--etcd-prefix", self.etcd_prefix) if self.etcd_prefix else ()
        args = [
            sys.executable, "-m", "router", "--etcd", self.etcd_endpoints,
            "--router-id", self.router_id, "--listen", self.target, *prefix, *self.extra_args,
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=log)
        self.wait_serving(timeout)

    def wait_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise service_error(f"router {self.router_id} exited early", self.log_path)
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise service_error(f"router {self.router_id} not serving after {timeout}s", self.log_path)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> int:
        """kill -9: no cleanup (shards cancel the orders of cancel-on-disconnect accounts)."""
        self.signal(signal.SIGKILL)
        return self.wait_exit()

    def stop(self, timeout: float = 30.0) -> int:
        """Graceful: SIGTERM, then wait (SIGKILL if it does not exit in time)."""
        self.signal(signal.SIGTERM)
        try:
            return self.wait_exit(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def wait_exit(self, timeout: float = 30.0) -> int:
        return -1 if self.proc is None else self.proc.wait(timeout=timeout)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
