"""The interface to membership and assignments; implemented by EtcdRegistry and MemoryRegistry.

Both implementations pass one conformance suite (tests/cluster/test_registry_conformance.py).
Keys (etcd) live under one prefix, default ``/spotmatch/v1/``:

    shards/<id>          ShardRecord, attached to the shard's lease
    drain/<id>           present while the shard is draining (survives restarts)
    symbols/<symbol>     the catalog of symbols to place
    pins/<symbol>        operator pin: shard id
    assignments/<symbol> Assignment (its mod_revision is the compare-and-swap token)
    controller           id of the elected controller, attached to its lease
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

from cluster.model import Assignment, Change, ClusterView, ShardRecord

DEFAULT_PREFIX = "/spotmatch/v1/"
DEFAULT_LEASE_TTL = 3  # seconds; etcd's minimum is 2


class Registration(Protocol):
    """A shard's membership. The implementation owns the lease-refresh task (every TTL/3).

    If the lease is lost anyway (expired while the registry was unreachable, revoked), the
    registration grants a new lease and registers again as soon as it can; ``lease_losses``
    counts those, and ``registered`` is set while the key is believed to be present.
    """

    registered: asyncio.Event
    lease_losses: int

    async def close(self) -> None:
        """Leave: revoke the lease (the shard key disappears at once) and stop refreshing."""


class Leadership(Protocol):
    """The controller's term; ``lost`` is set when its lease could not be kept."""

    lost: asyncio.Event

    async def resign(self) -> None: ...


class Registry(Protocol):
    async def snapshot(self) -> ClusterView:
        """A full, consistent read of everything under the prefix."""

    def watch(self, from_revision: int) -> AsyncIterator[list[Change]]:
        """Changes with revision >= ``from_revision``, grouped per registry revision.

        Raises cluster.errors.WatchLost when the watch breaks or the revision was compacted;
        the caller then resyncs with ``snapshot()`` and watches from its revision + 1.
        """

    async def register_shard(self, record: ShardRecord, ttl: int) -> Registration: ...

    async def set_draining(self, shard_id: str, draining: bool) -> None: ...

    async def add_symbol(self, symbol: str) -> None: ...

    async def set_pin(self, symbol: str, shard_id: str | None) -> None:
        """Pin ``symbol`` to ``shard_id``; None removes the pin."""

    async def create_assignment(self, assignment: Assignment) -> Assignment | None:
        """Write the first assignment of a symbol; None if one already exists."""

    async def cas_assignment(
        self, expected_revision: int, assignment: Assignment
    ) -> Assignment | None:
        """Replace the assignment if its mod_revision is still ``expected_revision``.

        Returns the stored assignment (revision and resolved epoch filled in), or None if
        the compare failed (someone else changed it first).
        """

    async def get_assignment(self, symbol: str) -> Assignment | None: ...

    async def campaign(self, candidate_id: str, ttl: int) -> Leadership:
        """Wait until ``candidate_id`` is the elected controller."""

    async def close(self) -> None: ...
