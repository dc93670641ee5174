"""Real local servers (PostgreSQL, etcd, Redis Cluster) on free loopback ports.

Used by the integration-test fixtures and the local cluster launcher. Each launcher keeps its
data and log under a base directory it is given; every wait has a deadline and fails with a
`ServiceError` quoting the server's log.
"""

from .etcd import EtcdServer
from .ports import free_port, free_ports
from .postgres import PostgresServer
from .process import MissingBinaryError, ServiceError
from .redis_cluster import RedisCluster

__all__ = [
    "EtcdServer",
    "MissingBinaryError",
    "PostgresServer",
    "RedisCluster",
    "ServiceError",
    "free_port",
    "free_ports",
]
