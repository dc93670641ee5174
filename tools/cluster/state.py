"""The state file of a local cluster (`run-dir/cluster.json`) and its shell env file.

`spotmatch up` writes both once everything is healthy; `spotmatch down` reads the state file
to stop exactly the processes `up` started, and `spotmatch ctl` reads it for its default
endpoints. Each process is recorded with its pid and kernel start time, so a pid the kernel
has since handed to another program is recognised and left alone.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tools.cluster.errors import LauncherError

STATE_FILE = "cluster.json"
ENV_FILE = "cluster.env"
FORMAT_VERSION = 1
DEFAULT_RUN_DIR = Path(".run/spotmatch")


@dataclass(frozen=True)
class ProcessRecord:
    name: str  # "router-1", "shard-2", "redis-0", "etcd", "postgres"
    kind: str  # "router", "shard", "redis", "etcd", "postgres"
    pid: int
    start_time: int  # /proc/<pid>/stat field 22 (clock ticks after boot)
    cmdline: list[str]
    log: str  # path of its log file
    address: str = ""  # host:port it serves, if any
    metrics: str = ""  # host:port of its Prometheus endpoint (shards, routers)


@dataclass(frozen=True)
class ClusterState:
    run_dir: str
    etcd_endpoint: str
    etcd_prefix: str
    pg_dsn: str
    redis_nodes: list[str]
    router_addresses: list[str]
    shard_addresses: list[str]
    processes: list[ProcessRecord] = field(default_factory=list)
    version: int = FORMAT_VERSION
    cluster_token_file: str = ""  # what routers present to shards (decision 0018)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("version") != FORMAT_VERSION:
            raise ValueError("not a spotmatch cluster state file (or another format version)")
        processes = [ProcessRecord(**p) for p in raw.pop("processes", [])]
        return cls(processes=processes, **raw)

    def env(self) -> dict[str, str]:
        """What `spotmatch ctl`, `spotmatch shard` and clients read from the environment."""
        return {
            "SPOTMATCH_ROUTERS": ",".join(self.router_addresses),
            "SPOTMATCH_ETCD": self.etcd_endpoint,
            "SPOTMATCH_ETCD_PREFIX": self.etcd_prefix,
            "SPOTMATCH_PG_DSN": self.pg_dsn,
            "SPOTMATCH_REDIS_NODES": ",".join(self.redis_nodes),
            "SPOTMATCH_CLUSTER_TOKEN_FILE": self.cluster_token_file,
        }


def state_path(run_dir: Path) -> Path:
    return run_dir / STATE_FILE


def read_state(run_dir: Path) -> ClusterState | None:
    """The recorded cluster, or None if there is none; LauncherError if it is unreadable."""
    path = state_path(run_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LauncherError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return ClusterState.from_json(text)
    except (ValueError, TypeError) as exc:
        raise LauncherError(f"{path} is damaged ({exc}); remove it by hand") from exc


def write_state(run_dir: Path, state: ClusterState) -> None:
    """Write the state file (atomically: a reader never sees half of it) and the env file."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = state_path(run_dir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.to_json())
    os.replace(tmp, path)
    lines = [f"export {k}={shlex.quote(v)}" for k, v in state.env().items()]
    (run_dir / ENV_FILE).write_text("\n".join(lines) + "\n")


def remove_state(run_dir: Path) -> None:
    for name in (STATE_FILE, ENV_FILE):
        (run_dir / name).unlink(missing_ok=True)
