"""Committed market data to Redis Cluster (the format: marketdata/keys.py).

The after-commit hook only notes, per symbol the batch touched, that the committed book moved
on (the view itself is ``pipeline.committed_books``) and the batch's fills; the publishing task
does every Redis write, so a slow or dead Redis never delays matching, commits or
acknowledgements. One round takes every symbol with pending data and writes, per symbol (the
keys share the ``{SYMBOL}`` hash tag, so one node, in order):

    SET      md:{S}:book     the snapshot at the latest committed seq, fresh as_of
    XADD     md:{S}:trades   one entry with the round's trades, if any (MAXLEN ~)
    SPUBLISH md:{S}:updates  [delta(last published seq -> latest), trades...], or
                             [RESNAPSHOT] when the chain is broken

so a busy symbol costs one snapshot and one message per round, however many batches committed
meanwhile. The chain breaks (RESNAPSHOT, no delta) when a symbol is taken (new owner, reload),
after a failed write (it may be partly applied), when pending trades overflow, and when the
trading status changes (a delta cannot carry it). A failed symbol keeps its pending data and
is retried with backoff by a second task, so symbols on healthy Redis nodes keep publishing;
when nothing is failing any more, every owned symbol is re-snapshotted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from marketdata.keys import (
    DEFAULT_DEPTH,
    HEARTBEAT_S,
    TRADES_MAXLEN,
    book_key,
    trades_key,
    updates_channel,
)
from shard.engine import Report
from shard.pipeline import BookView, Committed
from shard.publisher_messages import Encoded, TradeBatch, encode

log = logging.getLogger(__name__)

REDIS_TIMEOUT = 2.0  # one round of writes; also each socket connect and read
PENDING_TRADES_CAP = 10_000  # trade updates waiting per symbol; past it: drop oldest, RESNAPSHOT
BACKOFF = (0.1, 2.0)  # first and longest wait before retrying the symbols whose writes failed
ROUND_INTERVAL = 0.02  # at most one round per interval: under load a round carries many batches

RESTART_TAKEN = "symbol taken by this shard"
RESTART_FAILED = "market data cache recovered"
RESTART_OVERFLOW = "trades dropped while the cache was unavailable"
RESTART_STATUS = "trading status changed"


@dataclass(eq=False)
class _Feed:
    """One owned symbol's publishing state."""

    symbol: str
    published: BookView | None = None  # what subscribers hold: the last snapshot/delta target
    restart: str = RESTART_TAKEN  # non-empty: the chain is broken (why); next: RESNAPSHOT
    trades: deque[TradeBatch] = field(default_factory=deque)
    last_write: float = float("-inf")  # monotonic time of the last snapshot SET


@dataclass(eq=False)
class _Job:
    feed: _Feed
    view: BookView
    trades: list[TradeBatch]
    encoded: Encoded

    @property
    def commands(self) -> int:
        return 1 + (self.encoded.trades is not None) + (self.encoded.message is not None)


@dataclass
class PublisherStats:
    rounds: int = 0
    snapshots: int = 0  # snapshot SETs that succeeded
    messages: int = 0  # channel messages (deltas or RESNAPSHOTs) that succeeded
    resnapshots: int = 0
    trade_updates: int = 0
    failures: int = 0  # symbol writes that failed (the symbol stayed pending)
    dropped_trades: int = 0


class MarketDataPublisher:
    def __init__(
        self,
        nodes: Sequence[str],
        books: Mapping[str, BookView],
        *,
        depth: int = DEFAULT_DEPTH,
        timeout: float = REDIS_TIMEOUT,
        heartbeat: float = HEARTBEAT_S,
        trades_cap: int = PENDING_TRADES_CAP,
        backoff: tuple[float, float] = BACKOFF,
        interval: float = ROUND_INTERVAL,
    ) -> None:
        self._nodes = [ClusterNode(*_host_port(n)) for n in nodes]
        self._books = books  # the pipeline's committed views: only committed state is published
        self._depth = depth
        self._timeout = timeout
        self._heartbeat = heartbeat
        self._trades_cap = trades_cap
        self._backoff = backoff
        self._interval = interval
        self._feeds: dict[str, _Feed] = {}
        self._dirty: set[str] = set()  # symbols with something to write
        self._failed: set[str] = set()  # ... whose last write failed: the retry task's
        self._inflight: set[str] = set()
        self._wake = asyncio.Event()
        self._has_failed = asyncio.Event()
        self._settled = asyncio.Event()  # replaced after every round (flush waits on it)
        self._next_heartbeat = 0.0
        self._client: RedisCluster | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.stats = PublisherStats()

    @property
    def degraded(self) -> bool:
        """Some owned symbol's market data could not be written: what Redis holds is stale."""
        return bool(self._failed)

    # --- the after-commit hook and custody -----------------------------------------------

    def on_commit(self, done: Iterator[Committed]) -> None:
        """Pipeline after-commit hook: note what moved on; never blocks, never does I/O."""
        feeds = self._feeds
        touched: set[str] = set()
        now = time.time_ns()
        for _, outcome, _ in done:
            if type(outcome) is not Report:  # replays and failures changed nothing
                continue
            feed = feeds.get(outcome.symbol)
            if feed is None:
                continue
            touched.add(outcome.symbol)
            if outcome.fills:
                feed.trades.append(TradeBatch(outcome.seq, outcome.side, outcome.fills, now))
        if touched:
            for symbol in touched:
                if len(feeds[symbol].trades) > self._trades_cap:
                    self._drop_oldest_trades(feeds[symbol])
            self._dirty |= touched
            self._wake.set()

    def take(self, symbol: str) -> None:
        """``symbol`` is (again) served from ``books``: start a new chain from its snapshot."""
        self._feeds[symbol] = _Feed(symbol)
        self._dirty.add(symbol)
        self._wake.set()

    def drop(self, symbol: str) -> None:
        """``symbol`` is no longer ours: its new owner publishes it from now on."""
        self._feeds.pop(symbol, None)
        self._dirty.discard(symbol)
        self._failed.discard(symbol)

    async def flush(self, symbol: str, timeout: float | None = None) -> bool:
        """Wait until what has committed for ``symbol`` is written (a planned move calls this
        before handing over, so the old owner never writes after the new one). False at once
        if its writes are failing, or after ``timeout``."""
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        while symbol in self._dirty or symbol in self._inflight:
            left = deadline - time.monotonic()
            if symbol in self._failed or not self._tasks or left <= 0:
                return False
            await _wait(self._settled, left)
        return symbol not in self._failed

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._client = RedisCluster(
            startup_nodes=self._nodes,
            retry=Retry(NoBackoff(), 0),  # we retry, with backoff, without blocking anyone
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
        )
        self._tasks = [
            asyncio.create_task(self._main_loop(), name="md-publisher"),
            asyncio.create_task(self._retry_loop(), name="md-publisher-retry"),
        ]

    async def stop(self, timeout: float | None = None) -> None:
        """Write what is pending (unless failing; bounded by ``timeout``), then close."""
        deadline = time.monotonic() + (self._timeout if timeout is None else timeout)
        while self._tasks and ((self._dirty - self._failed) or self._inflight):
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("market data: %d symbols unpublished at stop", len(self._dirty))
                break
            await _wait(self._settled, left)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeout):
                    await self._client.aclose()

    # --- publishing -----------------------------------------------------------------------

    async def _main_loop(self) -> None:
        while True:
            now = time.monotonic()
            if now >= self._next_heartbeat:
                self._next_heartbeat = now + self._heartbeat / 2
                self._dirty.update(
                    s for s, f in self._feeds.items() if now - f.last_write >= self._heartbeat
                )
            ready = [s for s in self._dirty if s not in self._failed and s not in self._inflight]
            if not ready:
                self._wake.clear()
                await _wait(self._wake, self._next_heartbeat - now)
                continue
            await self._publish(ready)
            await asyncio.sleep(max(0.0, now + self._interval - time.monotonic()))

    async def _retry_loop(self) -> None:
        attempt = 0
        while True:
            await self._has_failed.wait()
            first, longest = self._backoff
            await asyncio.sleep(min(first * 2**attempt, longest))
            retry = [s for s in self._failed if s not in self._inflight]
            if retry:
                await self._publish(retry)
            if self._failed:
                attempt += 1
                continue
            attempt = 0
            self._has_failed.clear()
            self._recovered(set(retry))

    def _recovered(self, republished: set[str]) -> None:
        """Nothing fails any more: re-snapshot every owned symbol (the retried ones just were)."""
        log.info(
            "market data: cache writes recovered; re-snapshotting %d symbols", len(self._feeds)
        )
        for symbol, feed in self._feeds.items():
            if symbol not in republished:
                feed.restart = feed.restart or RESTART_FAILED
                self._dirty.add(symbol)
        self._wake.set()

    async def _publish(self, symbols: Iterable[str]) -> None:
        as_of = time.time_ns()
        jobs: list[_Job] = []
        for symbol in symbols:
            self._dirty.discard(symbol)
            feed = self._feeds.get(symbol)
            view = self._books.get(symbol)
            if feed is not None and view is None:
                self.drop(symbol)  # fenced out by a newer owner: no longer ours to publish
            elif feed is not None and view is not None:
                jobs.append(self._job(feed, view, as_of))
        if not jobs:
            return
        names = [job.feed.symbol for job in jobs]
        self._inflight.update(names)
        try:
            results = await self._write(jobs)
        finally:
            self._inflight.difference_update(names)
        self._settle(jobs, results)

    def _job(self, feed: _Feed, view: BookView, as_of: int) -> _Job:
        restart, published = feed.restart, feed.published
        if not restart and published is not None and published.halted != view.halted:
            restart = RESTART_STATUS
        trades = list(feed.trades)
        feed.trades.clear()
        feed.restart = ""
        return _Job(
            feed, view, trades, encode(view, published, restart, trades, self._depth, as_of)
        )

    async def _write(self, jobs: list[_Job]) -> list[object]:
        """Every job's commands in one cluster pipeline (one batch per node, sent in parallel);
        a result per command: the reply or the exception (the round's, if it failed whole)."""
        assert self._client is not None
        self.stats.rounds += 1
        pipe = self._client.pipeline()
        for job in jobs:
            symbol, encoded = job.feed.symbol, job.encoded
            pipe.set(book_key(symbol), encoded.book)
            if encoded.trades is not None:
                pipe.xadd(
                    trades_key(symbol), {b"u": encoded.trades}, maxlen=TRADES_MAXLEN,
                    approximate=True,
                )  # fmt: skip
            if encoded.message is not None:
                pipe.spublish(updates_channel(symbol), encoded.message)
        try:
            async with asyncio.timeout(self._timeout):
                return list(await pipe.execute(raise_on_error=False))
        except Exception as exc:  # any Redis trouble fails this round, never the task
            return [exc] * sum(job.commands for job in jobs)

    def _settle(self, jobs: list[_Job], results: list[object]) -> None:
        now = time.monotonic()
        was_degraded = self.degraded
        errors: list[BaseException] = []
        position = 0
        for job in jobs:
            replies = results[position : position + job.commands]
            position += job.commands
            error = next((r for r in replies if isinstance(r, BaseException)), None)
            if error is None:
                self._succeeded(job, now)
            else:
                errors.append(error)
                self._failed_job(job)
        if errors and not was_degraded:
            log.warning(
                "market data degraded: %d symbols not written (%s); trading goes on",
                len(errors),
                errors[0],
            )
        if self._failed:
            self._has_failed.set()
        settled, self._settled = self._settled, asyncio.Event()
        settled.set()
        if self._dirty:
            self._wake.set()

    def _succeeded(self, job: _Job, now: float) -> None:
        feed, stats = job.feed, self.stats
        feed.published = job.view
        feed.last_write = now
        if self._feeds.get(feed.symbol) is feed:
            self._failed.discard(feed.symbol)
        stats.snapshots += 1
        stats.trade_updates += len(job.trades)
        if job.encoded.message is not None:
            stats.messages += 1
            stats.resnapshots += job.encoded.resnapshot

    def _failed_job(self, job: _Job) -> None:
        """Keep what the job carried pending; its writes may be half done: break the chain."""
        feed = job.feed
        self.stats.failures += 1
        feed.restart = feed.restart or RESTART_FAILED
        feed.trades.extendleft(reversed(job.trades))
        if len(feed.trades) > self._trades_cap:
            self._drop_oldest_trades(feed)
        if self._feeds.get(feed.symbol) is feed:
            self._dirty.add(feed.symbol)
            self._failed.add(feed.symbol)

    def _drop_oldest_trades(self, feed: _Feed) -> None:
        excess = len(feed.trades) - self._trades_cap
        for _ in range(excess):
            feed.trades.popleft()
        self.stats.dropped_trades += excess
        if feed.restart != RESTART_OVERFLOW:  # once per outage, not once per batch
            log.warning("market data: dropping trade updates", extra={"symbol": feed.symbol})
        feed.restart = RESTART_OVERFLOW


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, timeout)):
            await event.wait()


def _host_port(node: str) -> tuple[str, int]:
    host, _, port = node.strip().rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)
