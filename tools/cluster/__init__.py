"""A local spotmatch cluster on loopback (`spotmatch up` / `spotmatch down`).

`LocalCluster` starts etcd, PostgreSQL, a Redis Cluster, shards and routers under one run
directory and records them in `cluster.json`; `stop_cluster` stops exactly what was recorded.
"""

from .errors import AlreadyRunning, LauncherError
from .launcher import LocalCluster, refuse_if_running, stop_cluster
from .state import DEFAULT_RUN_DIR, ClusterState, read_state

__all__ = [
    "DEFAULT_RUN_DIR",
    "AlreadyRunning",
    "ClusterState",
    "LauncherError",
    "LocalCluster",
    "read_state",
    "refuse_if_running",
    "stop_cluster",
]
