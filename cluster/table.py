"""The watched copy of the cluster state that routers, shards and the controller read.

``start()`` reads a full snapshot, then a follow task watches from the snapshot's revision + 1.
A change is applied only if its revision is newer than what the table already knows about its
key (so a stale event can never undo a newer read); after a watch error or compaction the table
backs off, re-reads everything and watches again. A malformed value keeps the key's last good
value, across resyncs too. Trading never depends on the registry: while it is unreachable the
table keeps serving its last view and keeps trying in the background (DESIGN section 5).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from cluster import codec
from cluster.errors import ClusterError, RegistryUnavailable, WatchLost
from cluster.model import Assignment, Change, ClusterView
from cluster.registry import Registry

log = logging.getLogger(__name__)

INITIAL_BACKOFF = 0.1  # seconds before the first resync attempt after a watch error
MAX_BACKOFF = 2.0
WARN_INTERVAL = 5.0  # at most one warning per subject this often (a broken etcd repeats)


class ClusterTable:
    def __init__(self, registry: Registry, *, name: str) -> None:
        self.listeners: list[Callable[[ClusterView], None]] = []
        self.resyncs = 0  # full re-reads after the first one
        self.watch_losses = 0
        self._registry = registry
        self._name = name
        self._builder = codec.ViewBuilder()
        self._view = ClusterView()
        self._floor = 0  # revision of the last full read: every key is known as of it
        self._key_revisions: dict[str, int] = {}  # keys changed since that read
        self._updated = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._warned: dict[str, float] = {}

    @property
    def revision(self) -> int:
        return self._view.revision

    def view(self) -> ClusterView:
        return self._view

    def assignment(self, symbol: str) -> Assignment | None:
        return self._view.assignments.get(symbol)

    def address(self, shard_id: str) -> str | None:
        record = self._view.shards.get(shard_id)
        return None if record is None else record.address

    async def start(self, timeout: float) -> None:
        """First full read (retried with backoff), then follow changes in the background.

        Raises RegistryUnavailable if no read succeeded within ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pause = INITIAL_BACKOFF
        while True:
            remaining = deadline - loop.time()
            try:
                async with asyncio.timeout(max(remaining, 0.01)):
                    view = await self._registry.snapshot()
                break
            except (ClusterError, TimeoutError) as exc:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise RegistryUnavailable(
                        f"{self._name}: no cluster snapshot within {timeout}s ({exc})"
                    ) from exc
                self._warn("start", "%s: cluster snapshot failed (%s); retrying", self._name, exc)
                await asyncio.sleep(min(pause, remaining))
                pause = min(pause * 2, MAX_BACKOFF)
        self._resync(view, force=True)
        self.resyncs = 0
        self._task = asyncio.create_task(self._follow(), name=f"cluster-table-{self._name}")

    async def refresh(self) -> ClusterView:
        """Re-read everything now (a router after a not-owner answer); raises ClusterError."""
        view = await self._registry.snapshot()
        self._resync(view, force=False)
        return self._view

    async def wait_for(
        self, predicate: Callable[[ClusterView], bool], timeout: float
    ) -> ClusterView:
        """The first view (current or later) that satisfies ``predicate``; TimeoutError after
        ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            view = self._view
            if predicate(view):
                return view
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"{self._name}: cluster view condition not met in {timeout}s")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._updated.wait()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _follow(self) -> None:
        """Watch, and on any error back off and resync; ends only when cancelled."""
        pause = INITIAL_BACKOFF
        while True:
            delivered = False
            stream = self._registry.watch(self._view.revision + 1)
            try:
                async for batch in stream:
                    self._apply(batch)
                    delivered = True
                raise WatchLost("watch ended")
            except Exception as exc:  # never dies: every failure ends in a resync
                self.watch_losses += 1
                if not isinstance(exc, ClusterError):
                    log.warning("%s: unexpected watch error", self._name, exc_info=True)
                self._warn("watch", "%s: watch lost (%s); resyncing", self._name, exc)
            finally:
                await _close(stream)
            if delivered:
                pause = INITIAL_BACKOFF
            pause = await self._recover(pause)

    async def _recover(self, pause: float) -> float:
        """Back off and re-read until a full read works; returns the next backoff."""
        while True:
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_BACKOFF)
            before = self._view.revision
            try:
                view = await self._registry.snapshot()
            except Exception as exc:
                self._warn("resync", "%s: resync failed (%s); retrying", self._name, exc)
                continue
            # Forced, so that a registry reset (its revision went back) is taken; but not
            # over a newer view that a concurrent refresh() applied while this read ran.
            self._resync(view, force=self._view.revision == before)
            return pause

    def _apply(self, batch: list[Change]) -> None:
        revision = self._view.revision
        applied = False
        for change in batch:
            key = f"{change.kind.value}/{change.name}" if change.name else change.kind.value
            if change.revision <= max(self._floor, self._key_revisions.get(key, 0)):
                continue  # older than what a full read already showed
            self._key_revisions[key] = change.revision
            revision = max(revision, change.revision)
            if change.malformed:
                self._warn(
                    key,
                    "%s: malformed value for %s at revision %d; keeping the last good one",
                    self._name,
                    key,
                    change.revision,
                )
            self._builder.apply(change)
            applied = True
        if applied:
            self._publish(revision)

    def _resync(self, view: ClusterView, *, force: bool) -> None:
        """Replace everything with ``view`` (a refresh older than the table is ignored)."""
        if view.revision < self._view.revision and not force:
            return
        if view.revision < self._view.revision:
            log.warning(
                "%s: registry revision went back from %d to %d (was it reset?)",
                self._name,
                self._view.revision,
                view.revision,
            )
        builder = codec.ViewBuilder.of(view)
        for key in view.malformed:
            parsed = codec.parse_key(key)
            if parsed is not None:
                builder.set_value(*parsed, self._builder.value(*parsed))
                self._warn(
                    key, "%s: malformed value for %s; keeping the last good one", self._name, key
                )
        self._builder = builder
        self._floor = view.revision
        self._key_revisions.clear()
        self.resyncs += 1
        self._publish(view.revision)

    def _publish(self, revision: int) -> None:
        view = self._view = self._builder.view(revision)
        self._updated.set()
        self._updated = asyncio.Event()
        for listener in list(self.listeners):
            try:
                listener(view)
            except Exception:
                log.exception("%s: cluster view listener failed", self._name)

    def _warn(self, subject: str, message: str, *args: object) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._warned.get(subject, -WARN_INTERVAL) >= WARN_INTERVAL:
            self._warned[subject] = now
            log.warning(message, *args)


async def _close(stream: AsyncIterator[list[Change]]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
