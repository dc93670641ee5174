"""A shard node in its own process (`python -m shard`), for benchmarks, fault tests and the
local cluster. Standalone with ``symbols``; in a cluster with ``--etcd`` in ``extra_args``."""

from __future__ import annotations

from pathlib import Path

from .node_process import NodeProcess


class ShardProcess(NodeProcess):
    kind = "shard"

    def __init__(
        self,
        dsn: str,
        log_dir: Path,
        symbols: tuple[str, ...],
        shard_id: str = "shard-1",
        failpoints: str = "",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(shard_id, log_dir, {"SPOTMATCH_FAILPOINTS": failpoints})
        self.dsn, self.symbols, self.shard_id = dsn, symbols, shard_id
        self.extra_args = extra_args

    def argv(self) -> list[str]:
        return [
            "--pg-dsn", self.dsn, "--shard-id", self.shard_id,
            "--symbols", ",".join(self.symbols), *self.extra_args,
        ]  # fmt: skip
