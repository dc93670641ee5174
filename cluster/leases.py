"""Keeping a leased key alive: the shard registration and the controller's term.

Both registries (etcd, memory) provide the four lease calls of ``LeaseBackend``; the refresh
logic lives here once. A registration refreshes its lease every TTL/3; when the lease is gone
(expired while unreachable, revoked) or has not been refreshed for longer than its TTL, it
grants a new lease and puts its key again, retrying until that works: a shard that was cut off
comes back by itself. A leadership does not come back: once its lease cannot be kept, ``lost``
is set and the controller has to campaign again (another may have won meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from cluster.errors import ClusterError

log = logging.getLogger(__name__)

CAMPAIGN_POLL = 0.25  # seconds between election attempts
REREGISTER_BACKOFF = (0.1, 2.0)  # first and largest pause between re-registration attempts


class LeaseBackend(Protocol):
    async def grant(self, ttl: int) -> int: ...

    async def keepalive(self, lease: int, timeout: float) -> bool | None:
        """True if refreshed, False if the lease is gone, None if the registry is unreachable
        or did not answer within ``timeout`` seconds."""

    async def put_leased(self, key: str, value: bytes, lease: int) -> None: ...

    async def revoke(self, lease: int) -> None: ...


class KeptRegistration:
    """A shard's key on a lease (implements cluster.registry.Registration)."""

    def __init__(self, backend: LeaseBackend, key: str, value: bytes, ttl: int) -> None:
        self.registered = asyncio.Event()
        self.lease_losses = 0
        self._backend = backend
        self._key = key
        self._value = value
        self._ttl = ttl
        self._lease = 0
        self._refreshing = True

    async def register(self) -> None:
        """Grant a lease and put the key on it; raises ClusterError if that fails."""
        lease = await self._backend.grant(self._ttl)
        try:
            await self._backend.put_leased(self._key, self._value, lease)
        except ClusterError:
            with contextlib.suppress(ClusterError):
                await self._backend.revoke(lease)
            raise
        self._lease = lease
        self.registered.set()

    async def keep(self) -> None:
        """Refresh until closed; never raises (an unexpected error is logged and retried)."""
        while await _refresh_until_lost(
            self._backend, self._lease, self._ttl, self._key, lambda: self._refreshing
        ):
            self.registered.clear()
            self.lease_losses += 1
            log.warning("lease of %s lost; registering again", self._key)
            await self._register_again()

    async def _register_again(self) -> None:
        old, pause = self._lease, REREGISTER_BACKOFF[0]
        with contextlib.suppress(Exception):  # it may still be alive on a hung server
            await self._backend.revoke(old)
        while self._refreshing:
            try:
                await self.register()
                log.info("%s registered again", self._key)
                return
            except Exception as exc:
                log.debug("registering %s again failed: %s", self._key, exc)
            await asyncio.sleep(pause)
            pause = min(pause * 2, REREGISTER_BACKOFF[1])

    def stop_refresh(self) -> None:
        """Test hook: stop refreshing, so the lease expires after its TTL."""
        self._refreshing = False

    async def close(self) -> None:
        """Leave: revoke the lease (the key disappears at once) and stop refreshing."""
        self._refreshing = False
        self.registered.clear()
        with contextlib.suppress(ClusterError):
            await self._backend.revoke(self._lease)


class KeptLeadership:
    """The controller key on a lease (implements cluster.registry.Leadership)."""

    def __init__(self, backend: LeaseBackend, lease: int, ttl: int) -> None:
        self.lost = asyncio.Event()
        self._backend = backend
        self._lease = lease
        self._ttl = ttl
        self._resigned = False

    async def keep(self) -> None:
        lost = await _refresh_until_lost(
            self._backend, self._lease, self._ttl, "the controller", lambda: not self._resigned
        )
        if lost and not self._resigned:
            log.warning("controller lease lost")
            self.lost.set()

    async def resign(self) -> None:
        """Give up the term: the controller key disappears at once."""
        self._resigned = True
        with contextlib.suppress(ClusterError):
            await self._backend.revoke(self._lease)


class _Pace:
    """Refresh attempts start every TTL/3, counted from the start of the previous one: an
    attempt that hung until its timeout is followed by the next at once, not TTL/3 later."""

    def __init__(self, ttl: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._period = ttl / 3
        self._next = self._loop.time() + self._period

    async def wait(self) -> None:
        await asyncio.sleep(max(0.0, self._next - self._loop.time()))
        self._next = self._loop.time() + self._period


async def _refresh_until_lost(
    backend: LeaseBackend, lease: int, ttl: int, owner: str, running: Callable[[], bool]
) -> bool:
    """Refresh ``lease`` every TTL/3 while ``running()``. True once it is lost: gone, or not
    refreshed for longer than its TTL (it may have expired unseen); False if stopped."""
    loop = asyncio.get_running_loop()
    last_ok = loop.time()
    pace = _Pace(ttl)
    while running():
        await pace.wait()
        if not running():
            return False
        alive = await _refresh(backend, lease, ttl, owner)
        if alive:
            last_ok = loop.time()
        elif alive is False or loop.time() - last_ok > ttl:
            return True
    return False


async def _refresh(backend: LeaseBackend, lease: int, ttl: int, owner: str) -> bool | None:
    """One refresh, bounded by TTL/3: a registry that hangs (a partitioned member, an
    election) leaves time for another attempt, elsewhere, before the lease expires."""
    try:
        return await backend.keepalive(lease, ttl / 3)
    except Exception:
        log.exception("refreshing the lease of %s failed", owner)
        return None
