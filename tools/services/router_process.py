"""A router in its own process (`python -m router`), for fault tests and benchmarks.

The router reads its shards and symbol assignments from etcd (``--etcd``), so start it after
the shards have registered (it buffers commands for a while if they have not yet)."""

from __future__ import annotations

from pathlib import Path

from .node_process import NodeProcess


class RouterProcess(NodeProcess):
    kind = "router"

    def __init__(
        self,
        etcd_endpoints: str,
        log_dir: Path,
        router_id: str = "router-1",
        etcd_prefix: str = "",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(router_id, log_dir)
        self.etcd_endpoints, self.router_id = etcd_endpoints, router_id
        self.etcd_prefix = etcd_prefix
        self.extra_args = extra_args

    def argv(self) -> list[str]:
        prefix = ["--etcd-prefix", self.etcd_prefix] if self.etcd_prefix else []
        return ["--etcd", self.etcd_endpoints, "--router-id", self.router_id, *prefix,
                *self.extra_args]  # fmt: skip
