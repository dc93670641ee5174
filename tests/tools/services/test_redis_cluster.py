"""The Redis Cluster launcher against real nodes: slots, a node down, a node back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as ClusterClient
from redis.crc import key_slot
from redis.retry import Retry

from tools.services import RedisCluster

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_cluster_clean: RedisCluster) -> Iterator[ClusterClient]:
    nodes = [
        ClusterNode(host, port)  # type: ignore[no-untyped-call]
        for host, port in redis_cluster_clean.startup_nodes
    ]
    cluster_client = ClusterClient(
        startup_nodes=nodes,
        decode_responses=True,
        socket_timeout=2,
        socket_connect_timeout=2,
        retry=Retry(NoBackoff(), 1),
    )
    yield cluster_client
    cluster_client.close()


def _key_per_node(client: ClusterClient) -> dict[int, str]:
    """One key owned by each node, as {node port: key}."""
    keys: dict[int, str] = {}
    for n in range(1000):
        key = f"md:BTC-USD:{n}"
        node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
        keys.setdefault(node.port, key)
    return keys


def test_keys_in_every_node_round_trip(
    redis_cluster_clean: RedisCluster, client: ClusterClient
) -> None:
    keys = _key_per_node(client)
    assert sorted(keys) == sorted(redis_cluster_clean.ports)
    for port, key in keys.items():
        client.set(key, f"owned by {port}")
    for port, key in keys.items():
        assert client.get(key) == f"owned by {port}"
    assert len({key_slot(key.encode()) for key in keys.values()}) == len(keys)


def test_flush_all_empties_every_master(
    redis_cluster_clean: RedisCluster, client: ClusterClient
) -> None:
    keys = _key_per_node(client)
    for key in keys.values():
        client.set(key, "x")
    redis_cluster_clean.flush_all()
    assert all(client.get(key) is None for key in keys.values())


def test_a_killed_node_fails_its_slots_until_restarted(
    redis_cluster_clean: RedisCluster, client: ClusterClient
) -> None:
    keys = _key_per_node(client)
    victim = 1
    victim_key = keys[redis_cluster_clean.ports[victim]]
    redis_cluster_clean.kill_node(victim)
    assert not redis_cluster_clean.is_node_running(victim)
    with pytest.raises(redis.RedisError):
        client.set(victim_key, "lost")

    redis_cluster_clean.start_node(victim)
    assert redis_cluster_clean.is_running()
    client.set(victim_key, "back")
    assert client.get(victim_key) == "back"
    for key in keys.values():
        client.set(key, "all writable")


def test_ensure_running_restarts_a_killed_node(redis_cluster_clean: RedisCluster) -> None:
    redis_cluster_clean.kill_node(0)
    redis_cluster_clean.ensure_running()
    assert redis_cluster_clean.is_running()
    with redis.Redis(*redis_cluster_clean.startup_nodes[0], socket_timeout=2) as node:
        info = node.execute_command("CLUSTER", "INFO")
    text = info.decode() if isinstance(info, bytes) else str(info)
    assert "cluster_state:ok" in text
