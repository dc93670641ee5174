"""Lease refresh pacing: one registry call that hangs must not cost the lease."""

from __future__ import annotations

import asyncio

from cluster.leases import KeptLeadership, KeptRegistration

TTL = 1  # seconds: refreshes every ~0.33 s


class HangingOnce:
    """A lease backend whose first refresh hangs until its timeout (an etcd member that
    stopped answering), as a registry call does; every other call answers at once. The lease
    itself expires TTL after its last refresh, as on the server."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.refreshed_at = [self.loop.time()]
        self.calls = 0

    async def grant(self, ttl: int) -> int:
        return 1

    async def keepalive(self, lease: int, timeout: float = 2.0) -> bool | None:
        """``timeout`` defaults to the etcd registry's own (2 s)."""
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(timeout)
            return None
        now = self.loop.time()
        alive = now - self.refreshed_at[-1] < TTL
        if alive:
            self.refreshed_at.append(now)
        return alive

    async def put_leased(self, key: str, value: bytes, lease: int) -> None:
        return None

    async def revoke(self, lease: int) -> None:
        return None


async def test_a_registration_survives_one_hung_refresh() -> None:
    backend = HangingOnce()
    registration = KeptRegistration(backend, "shards/s1", b"{}", TTL)
    await registration.register()
    keeping = asyncio.create_task(registration.keep())
    await asyncio.sleep(2.5 * TTL)
    registration.stop_refresh()
    await asyncio.wait_for(keeping, 2 * TTL)
    assert registration.lease_losses == 0
    assert len(backend.refreshed_at) >= 4  # kept refreshing after the hang


async def test_a_leadership_survives_one_hung_refresh() -> None:
    backend = HangingOnce()
    leadership = KeptLeadership(backend, 1, TTL)
    keeping = asyncio.create_task(leadership.keep())
    await asyncio.sleep(2.5 * TTL)
    assert not leadership.lost.is_set()
    await leadership.resign()
    await asyncio.wait_for(keeping, 2 * TTL)
