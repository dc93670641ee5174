"""The set of shard links, following the table's live shards, and the account
subscriptions that Trade streams share over them.

Every Trade stream that lists accounts subscribes them on every link (ref-counted: a shard
hears about an account once per router, whatever the number of streams); a link that
(re)connects sends the whole current state in its first message. The shard's
cancel-on-disconnect flag is set while at least one stream of the account asked for it,
so the shard cancels those orders itself if this router dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

from cluster.model import ShardRecord
from matching.v1 import gateway_pb2, orders_pb2, shard_pb2
from router.config import RouterConfig
from router.link import LinkHooks, ShardLink
from router.wire import control_requests

log = logging.getLogger(__name__)

CommandResult = orders_pb2.CommandResult


class Subscriber(Protocol):
    """A Trade stream: takes unsolicited reports without blocking."""

    def deliver(self, message: gateway_pb2.TradeResponse) -> None: ...


class Subscriptions:
    def __init__(self, broadcast: Callable[[list[bytes]], None]) -> None:
        self._broadcast = broadcast
        self._streams: dict[str, set[Subscriber]] = {}
        self._cancel_on_disconnect: dict[str, int] = {}  # account -> streams asking
        self._cancelling: dict[str, int] = {}  # account -> gone streams, cancels running

    def add(self, stream: Subscriber, accounts: Iterable[str], cancel_on_disconnect: bool) -> None:
        cod = self._cancel_on_disconnect
        changed: list[shard_pb2.AccountSubscription] = []
        for account in accounts:
            streams = self._streams.setdefault(account, set())
            if stream in streams:
                continue
            streams.add(stream)
            first_cod = False
            if cancel_on_disconnect:
                cod[account] = cod.get(account, 0) + 1
                first_cod = cod[account] == 1
            if len(streams) == 1 or first_cod:
                changed.append(_subscription(account, account in cod))
        if changed:
            self._broadcast(control_requests(subscribe=changed))

    def remove(
        self, stream: Subscriber, accounts: Iterable[str], cancel_on_disconnect: bool
    ) -> None:
        cod = self._cancel_on_disconnect
        unsubscribe: list[str] = []
        cod_off: list[shard_pb2.AccountSubscription] = []
        for account in accounts:
            streams = self._streams.get(account)
            if streams is None or stream not in streams:
                continue
            streams.discard(stream)
            cod_dropped = False
            if cancel_on_disconnect and account in cod:
                cod[account] -= 1
                if not cod[account]:
                    del cod[account]
                    cod_dropped = True
            if not streams:
                del self._streams[account]
                unsubscribe.append(account)
            elif cod_dropped:  # still subscribed: a subscribe without the flag clears it
                cod_off.append(_subscription(account, False))
        if unsubscribe or cod_off:
            self._broadcast(control_requests(subscribe=cod_off, unsubscribe=unsubscribe))

    @contextlib.contextmanager
    def cancelling(self, accounts: Iterable[str]) -> Iterator[None]:
        """While a gone stream's cancel-on-disconnect runs (before ``remove``): a link
        closed on purpose leaves these accounts subscribed, so its end cancels them too."""
        held = list(accounts)
        for account in held:
            self._cancelling[account] = self._cancelling.get(account, 0) + 1
        try:
            yield
        finally:
            for account in held:
                self._cancelling[account] -= 1
                if not self._cancelling[account]:
                    del self._cancelling[account]

    def detach_requests(self) -> list[bytes]:
        """What a link closed on purpose sends before it ends (router.link): unsubscribe
        every account whose clients are still here."""
        staying = [a for a in sorted(self._streams) if a not in self._cancelling]
        return control_requests(unsubscribe=staying)

    def current(self) -> list[shard_pb2.AccountSubscription]:
        return [_subscription(a, a in self._cancel_on_disconnect) for a in sorted(self._streams)]

    def fan_out(self, results: list[CommandResult]) -> None:
        """Unsolicited reports of one shard message to the streams of their accounts."""
        by_stream: dict[Subscriber, list[CommandResult]] = {}
        for result in results:
            for stream in self._streams.get(result.report.account, ()):
                by_stream.setdefault(stream, []).append(result)
        for stream, mine in by_stream.items():
            stream.deliver(gateway_pb2.TradeResponse(results=mine))


def _subscription(account: str, cancel_on_disconnect: bool) -> shard_pb2.AccountSubscription:
    return shard_pb2.AccountSubscription(account=account, cancel_on_disconnect=cancel_on_disconnect)


class LinkSet:
    def __init__(
        self,
        config: RouterConfig,
        on_ready: Callable[[ShardLink], None],
        on_released: Callable[[ShardLink, list[str]], None],
    ) -> None:
        self._config = config
        self.subscriptions = Subscriptions(self.broadcast)
        subscriptions = self.subscriptions
        self._hooks = LinkHooks(
            on_ready,
            subscriptions.fan_out,
            subscriptions.current,
            on_released,
            subscriptions.detach_requests,
        )
        self._links: dict[str, ShardLink] = {}
        self._detaching: set[ShardLink] = set()  # closed on purpose, not yet gone
        self._closing: set[asyncio.Task[None]] = set()

    def get(self, shard_id: str) -> ShardLink | None:
        return self._links.get(shard_id)

    def find(self, shard_id: str) -> ShardLink | None:
        """The shard's link, or the one closing since it left membership (until closed)."""
        link = self._links.get(shard_id)
        if link is None:
            link = next((d for d in self._detaching if d.shard_id == shard_id), None)
        return link

    def all(self) -> list[ShardLink]:
        return list(self._links.values())

    def broadcast(self, messages: list[bytes]) -> None:
        for link in (*self._links.values(), *self._detaching):
            link.send_control(messages)

    def sync(self, shards: Mapping[str, ShardRecord]) -> None:
        """One link per live shard: open links to new shards, close those that left (their
        queued commands are answered "not sent" and retried by the dispatcher)."""
        for shard_id, link in list(self._links.items()):
            record = shards.get(shard_id)
            if record is None or record.address != link.address:
                del self._links[shard_id]
                log.info("shard %s left (or moved address): closing its link", shard_id)
                task = asyncio.create_task(link.close(detach=True))
                self._detaching.add(link)
                self._closing.add(task)
                task.add_done_callback(functools.partial(self._closed, link))
        for shard_id, record in shards.items():
            if shard_id not in self._links:
                link = ShardLink(shard_id, record.address, self._config, self._hooks)
                self._links[shard_id] = link
                link.start()

    def _closed(self, link: ShardLink, task: asyncio.Task[None]) -> None:
        self._closing.discard(task)
        self._detaching.discard(link)

    async def wait_ready(self, timeout: float) -> bool:
        """Until every link is connected or ``timeout`` passes; whether all are."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not all(link.ready for link in self._links.values()):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def close(self) -> None:
        links, self._links = list(self._links.values()), {}
        await asyncio.gather(*(link.close() for link in links), *self._closing)
