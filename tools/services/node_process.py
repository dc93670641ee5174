"""A spotmatch node (shard or router) in its own process: start it, wait until its gRPC
health check says SERVING, signal it, stop it, read its log. Subclasses give the command."""

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


class NodeProcess:
    kind = "node"  # "shard" / "router": used in messages and log names

    def __init__(self, name: str, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        args = [sys.executable, "-m", self.kind, "--listen", self.target, *self.argv()]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=log)
        self.wait_serving(timeout)

    def wait_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise service_error(f"{self.kind} {self.name} exited early", self.log_path)
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.1)
        raise service_error(f"{self.kind} {self.name} not serving after {timeout}s", self.log_path)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> int:
        """kill -9: no cleanup, nothing flushed."""
        self.signal(signal.SIGKILL)
        return self.wait_exit()

    def stop(self, timeout: float = 30.0) -> int:
        """Graceful: SIGTERM, then wait (SIGKILL if it does not exit in time)."""
        self.signal(signal.SIGCONT)  # a SIGSTOPped node must run to handle SIGTERM
        self.signal(signal.SIGTERM)
        try:
            return self.wait_exit(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def wait_exit(self, timeout: float = 30.0) -> int:
        return -1 if self.proc is None else self.proc.wait(timeout=timeout)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
