"""The two Registry backends behind one fixture, so one suite runs against both.

``backend_fixture()`` makes a parametrized fixture: "memory" is a MemoryRegistry on a fresh
MemoryStore (in-process); "etcd" is an EtcdRegistry on the test's private etcd under a unique
prefix. ``Backend.client()`` opens another client on the same state (a second process), and the
test hooks (compaction, raw values, lease loss) are async for both.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from cluster.etcd import EtcdRegistry
from cluster.memory import MemoryRegistry, MemoryStore

AnyRegistry = MemoryRegistry | EtcdRegistry
TTL = 2  # seconds: etcd's minimum lease TTL
BACKENDS = ["memory", pytest.param("etcd", marks=pytest.mark.integration)]


class Backend:
    def __init__(self, kind: str, make: Callable[[], AnyRegistry]) -> None:
        self.kind = kind
        self._make = make
        self._clients: list[AnyRegistry] = []
        self.registry = make()

    async def client(self) -> AnyRegistry:
        """Another client of the same cluster state."""
        client = self._make()
        self._clients.append(client)
        if isinstance(client, EtcdRegistry):
            await client.connect()
        return client

    async def compact(self, revision: int) -> None:
        await _maybe_await(self.registry.compact(revision))

    async def put_raw(self, key: str, value: bytes) -> int:
        return int(await _maybe_await(self.registry.put_raw(key, value)))

    async def expire_lease(self, shard_id: str) -> None:
        await _maybe_await(self.registry.expire_lease(shard_id))

    async def expire_controller_lease(self) -> None:
        await _maybe_await(self.registry.expire_controller_lease())

    async def close(self) -> None:
        for client in [self.registry, *self._clients]:
            await client.close()


async def _maybe_await(result: Any) -> Any:
    """MemoryRegistry's hooks are synchronous, EtcdRegistry's are coroutines."""
    if hasattr(result, "__await__"):
        return await result
    return result


def backend_fixture() -> Any:
    """A fixture named after the variable it is assigned to, over both backends."""

    @pytest.fixture(params=BACKENDS)
    async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
        if request.param == "memory":
            store = MemoryStore()
            made = Backend("memory", lambda: MemoryRegistry(store))
        else:
            server = request.getfixturevalue("etcd_server")
            prefix = f"/test-{uuid.uuid4().hex[:8]}/"
            made = Backend("etcd", lambda: EtcdRegistry([server.endpoint], prefix=prefix))
            assert isinstance(made.registry, EtcdRegistry)
            await made.registry.connect()
        try:
            yield made
        finally:
            await made.close()

    return backend
