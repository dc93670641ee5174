"""Unit tests of the link's batching and failure answers and of the symbol buffers: no
sockets (a link's channel is created but never used), no sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from cluster.model import Assignment, AssignmentState, ClusterView
from matching.v1 import gateway_pb2, orders_pb2, shard_pb2, types_pb2
from router.buffers import WAIT, Route, SymbolBuffers
from router.errors import LinkClosed, LinkOverloaded
from router.link import LinkHooks, Part, ShardLink
from router.links import Subscriptions
from router.routing import Dispatcher
from router.wire import subscription_changes
from tests.router.support import router_config

RC = types_pb2.RejectCode


def _body(i: int) -> bytes:
    command = orders_pb2.OrderCommand(
        correlation_id=999, place_order=orders_pb2.PlaceOrder(symbol="BTC-USDT", price=i)
    )
    return command.SerializeToString()


def _part(n: int, start: int = 0, deadline: int = 5, seq: int = 0) -> Part:
    return Part(list(range(n)), [_body(start + i) for i in range(n)], [deadline] * n, seq)


def _hooks(subscriptions: Callable[[], list[shard_pb2.AccountSubscription]]) -> LinkHooks:
    return LinkHooks(ready=lambda _: None, unsolicited=lambda _: None,
                     subscriptions=subscriptions, released=lambda *_: None,
                     detach=list)  # fmt: skip


@pytest.fixture
async def link() -> AsyncIterator[ShardLink]:
    hooks = _hooks(list)
    config = router_config(batch_max_commands=3, link_max_queued=8)
    link = ShardLink("shard-x", "127.0.0.1:1", config, hooks)
    link.ready = True  # as if a stream were open; nothing is ever sent
    yield link
    link.ready = False
    await link.close()


def _take(link: ShardLink) -> shard_pb2.ExecuteRequest | None:
    raw = link._take()
    return None if raw is None else shard_pb2.ExecuteRequest.FromString(raw)


async def test_batches_are_capped_split_and_ordered(link: ShardLink) -> None:
    first, second = _part(2, 0, deadline=7), _part(3, 10, deadline=9)
    link.submit(first)
    link.submit(second)
    assert link.queued == 5
    one, two = _take(link), _take(link)
    assert one is not None and two is not None and _take(link) is None
    assert (one.batch_id, two.batch_id) == (1, 2)
    assert [c.correlation_id for c in one.commands] == [1, 2, 3]  # capped at 3, split
    assert [c.correlation_id for c in two.commands] == [4, 5]
    assert [c.deadline_unix_nanos for c in (*one.commands, *two.commands)] == [7, 7, 9, 9, 9]
    assert [c.place_order.price for c in (*one.commands, *two.commands)] == [0, 1, 10, 11, 12]
    assert link.queued == 0 and first.sent == 2 and second.sent == 3


async def test_answers_by_correlation_id_and_the_bound(link: ShardLink) -> None:
    part = _part(3)
    link.submit(part)
    with pytest.raises(LinkOverloaded):
        link.submit(_part(6))  # 3 + 6 > 8
    request = _take(link)
    assert request is not None
    for command in reversed(request.commands):  # any order
        result = orders_pb2.CommandResult(correlation_id=command.correlation_id)
        result.report.seq = command.correlation_id
        link._pending.pop(command.correlation_id).answer(command.correlation_id - part.base,
                                                         result)  # fmt: skip
    assert part.future.done()
    assert [r.report.seq for r in part.results if r is not None] == [1, 2, 3]


async def test_a_caller_that_gave_up_is_not_sent(link: ShardLink) -> None:
    gone, kept = _part(2), _part(1, 5)
    link.submit(gone)
    link.submit(kept)
    gone.future.cancel()
    request = _take(link)
    assert request is not None and [c.place_order.price for c in request.commands] == [5]
    assert link.queued == 0


async def test_a_lost_stream_answers_sent_unknown_and_unsent_not_sent(link: ShardLink) -> None:
    sent, unsent = _part(3), _part(2)
    link.submit(sent)
    link.submit(unsent)
    assert _take(link) is not None  # the first three go out
    link._lost("test")
    assert not link.ready and link.queued == 0
    assert {r.error.reason for r in sent.results if r is not None} == {
        RC.REJECT_CODE_OUTCOME_UNKNOWN
    }
    assert {r.error.reason for r in unsent.results if r is not None} == {
        RC.REJECT_CODE_SHUTTING_DOWN
    }
    assert sent.future.done() and unsent.future.done() and unsent.shard_id == ""
    with pytest.raises(LinkClosed):
        link.submit(_part(1))


async def test_a_detach_answers_only_what_was_never_sent(link: ShardLink) -> None:
    """A link closed on purpose waits for the answers of what it sent: a part split across
    batches keeps its sent commands waiting and gets "not sent" only for the rest."""
    split, later = _part(5), _part(1)
    link.submit(split)
    link.submit(later)
    assert _take(link) is not None  # three of ``split`` go out
    link._fail_unsent()
    assert split.results[:3] == [None] * 3 and not split.future.done()
    assert [r.error.reason for r in split.results[3:] if r is not None] == [
        RC.REJECT_CODE_SHUTTING_DOWN
    ] * 2
    assert split.shard_id == "shard-x" and later.shard_id == ""  # the retry may need to wait
    assert later.future.done() and link.queued == 0


async def test_a_detaching_link_takes_subscription_changes_until_its_detach_is_written(
    link: ShardLink,
) -> None:
    """A client that ends cleanly after the link began to detach is no longer in the state
    the detach unsubscribes: its own unsubscribe must still reach the shard first."""
    link.ready = False  # as close(detach=True) leaves it
    link._detaching = True
    link.send_control([b"calm ended cleanly"])
    link._detach_written = True
    link.send_control([b"too late: the detach covered it"])
    assert link._control == [b"calm ended cleanly"]


async def test_buffers_keep_arrival_order_and_their_bounds(link: ShardLink) -> None:
    route: dict[str, Route] = {"BTC-USDT": WAIT}
    buffers = SymbolBuffers(4, 60.0, lambda symbol: route[symbol])
    later, latest, retried = _part(1, 20, seq=5), _part(1, 30, seq=6), _part(1, 10, seq=3)
    for part in (later, latest, retried):
        buffers.add("BTC-USDT", part)
    full = _part(2, seq=7)
    buffers.add("BTC-USDT", full)  # 3 + 2 > 4: refused at once
    assert full.future.done() and full.final
    assert {r.error.reason for r in full.results if r is not None} == {RC.REJECT_CODE_SYMBOL_MOVING}
    buffers.drain()
    assert buffers.count("BTC-USDT") == 3 and link.queued == 0  # still not routable
    route["BTC-USDT"] = link
    buffers.drain()
    assert buffers.count("BTC-USDT") == 0
    request = _take(link)
    assert request is not None
    assert [c.place_order.price for c in request.commands] == [10, 20, 30]  # retried first


async def test_buffered_commands_expire(link: ShardLink) -> None:
    buffers = SymbolBuffers(10, 0.0, lambda _: WAIT)
    part = _part(2)
    buffers.add("ETH-USDT", part)
    await asyncio.wait_for(part.future, 5.0)  # the timer runs on the next loop turn
    assert part.final and buffers.count("ETH-USDT") == 0
    error = part.results[0].error if part.results[0] is not None else None
    assert error is not None and error.reason == RC.REJECT_CODE_SYMBOL_MOVING
    assert error.code == types_pb2.ERROR_CODE_UNAVAILABLE and error.retryable


# --- subscriptions ---------------------------------------------------------------------------


class _Stream:
    def deliver(self, message: gateway_pb2.TradeResponse) -> None:
        return None


def _state(message: bytes) -> tuple[list[tuple[str, bool]], list[str]]:
    request = shard_pb2.ExecuteRequest.FromString(message)
    subscribed = [(s.account, s.cancel_on_disconnect) for s in request.subscribe]
    return subscribed, list(request.unsubscribe_accounts)


def test_the_last_cancel_on_disconnect_stream_leaving_clears_the_flag_in_one_message() -> None:
    """Unsubscribing and subscribing again (two messages) left a moment in which the shard
    dropped the account's maker reports meant for the stream that stays."""
    sent: list[bytes] = []
    subscriptions = Subscriptions(sent.extend)
    guarded, plain = _Stream(), _Stream()
    subscriptions.add(guarded, ["mm"], cancel_on_disconnect=True)
    subscriptions.add(plain, ["mm"], cancel_on_disconnect=False)
    sent.clear()
    subscriptions.remove(guarded, ["mm"], cancel_on_disconnect=True)
    assert [_state(m) for m in sent] == [([("mm", False)], [])]
    subscriptions.remove(plain, ["mm"], cancel_on_disconnect=False)
    assert _state(sent[-1]) == ([], ["mm"])


def test_a_link_closed_on_purpose_unsubscribes_only_clients_still_here() -> None:
    subscriptions = Subscriptions(lambda _: None)
    staying, gone = _Stream(), _Stream()
    subscriptions.add(staying, ["mm"], cancel_on_disconnect=True)
    subscriptions.add(gone, ["gone"], cancel_on_disconnect=True)
    with subscriptions.cancelling(["gone"]):  # its cancel-on-disconnect is running
        assert [_state(m) for m in subscriptions.detach_requests()] == [([], ["mm"])]
    assert [_state(m) for m in subscriptions.detach_requests()] == [([], ["gone", "mm"])]
    subscriptions.remove(staying, ["mm"], cancel_on_disconnect=True)
    subscriptions.remove(gone, ["gone"], cancel_on_disconnect=True)
    assert subscriptions.detach_requests() == []


def test_subscription_changes_turn_one_state_into_another() -> None:
    def sub(account: str, cod: bool) -> shard_pb2.AccountSubscription:
        return shard_pb2.AccountSubscription(account=account, cancel_on_disconnect=cod)

    before = [sub("a", False), sub("b", True), sub("c", False)]
    after = [sub("a", False), sub("b", False), sub("d", True)]
    change = subscription_changes(before, after)
    assert [_state(m) for m in change] == [([("b", False), ("d", True)], ["c"])]
    assert subscription_changes(after, list(after)) == []


class _SlowFirstWrite:
    """An Execute call whose first write (the subscription state) takes until ``release``;
    it records what is written and never answers."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.release = asyncio.Event()
        self.first_write_started = asyncio.Event()

    async def write(self, message: bytes) -> None:
        if not self.written:
            self.first_write_started.set()
            await self.release.wait()
        self.written.append(message)

    async def read(self) -> object:
        await asyncio.Event().wait()  # never answers
        return None

    def cancel(self) -> None:
        return None


def _link_on(call: _SlowFirstWrite, subscriptions: Subscriptions) -> ShardLink:
    """A link whose channel is ready at once and whose Execute call is ``call``."""
    link = ShardLink("shard-x", "127.0.0.1:1", router_config(), _hooks(subscriptions.current))

    async def channel_ready() -> None:
        return None

    link._channel.channel_ready = channel_ready  # type: ignore[method-assign]
    link._execute = lambda: call  # type: ignore[assignment, return-value, method-assign]
    return link


async def test_a_subscription_made_while_the_link_connects_reaches_the_shard() -> None:
    sent: list[bytes] = []
    subscriptions = Subscriptions(sent.extend)
    call = _SlowFirstWrite()
    link = _link_on(call, subscriptions)
    serving = asyncio.create_task(link._serve_once())
    await call.first_write_started.wait()
    subscriptions.add(_Stream(), ["mm"], cancel_on_disconnect=True)  # link not ready: dropped
    call.release.set()
    for _ in range(100):
        if len(call.written) >= 2:
            break
        await asyncio.sleep(0.01)
    serving.cancel()
    await asyncio.gather(serving, return_exceptions=True)
    await link.close()
    assert _state(call.written[0]) == ([], [])
    assert _state(call.written[1]) == ([("mm", True)], [])


async def test_a_link_connecting_sends_a_large_state_in_bounded_messages() -> None:
    """The whole state went in one message: with enough accounts it passed the shard's
    max message size, and the link could never connect again."""
    subscriptions = Subscriptions(lambda _: None)
    accounts = [f"account-{i:06d}-{'x' * 48}" for i in range(25_000)]  # 64 bytes each
    subscriptions.add(_Stream(), accounts, cancel_on_disconnect=True)
    call = _SlowFirstWrite()
    call.release.set()
    link = _link_on(call, subscriptions)
    serving = asyncio.create_task(link._serve_once())
    for _ in range(100):
        if link.ready:
            break
        await asyncio.sleep(0.01)
    serving.cancel()
    await asyncio.gather(serving, return_exceptions=True)
    await link.close()
    requests = [shard_pb2.ExecuteRequest.FromString(m) for m in call.written]
    assert [len(r.subscribe) for r in requests] == [10_000, 10_000, 5_000]
    assert max(len(m) for m in call.written) < 1 << 20
    assert [r.HasField("options") for r in requests] == [True, False, False]
    assert [s.account for r in requests for s in r.subscribe] == accounts


class _GatedSecondWrite(_SlowFirstWrite):
    """Like _SlowFirstWrite, and its second write waits for ``gate``."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.second_write_started = asyncio.Event()

    async def write(self, message: bytes) -> None:
        if len(self.written) == 1:
            self.second_write_started.set()
            await self.gate
        await super().write(message)


async def test_a_link_cancelled_as_a_write_completes_still_stops() -> None:
    """Python 3.11's asyncio.wait_for returns the result when its task is cancelled just as
    the awaited write completes, so a send loop written with it swallowed the cancel and
    waited for work forever, and the link's close (a router's stop) hung (seen: ~1 stop in
    10 in tests/router/test_auth.py). The write and the cancel land in one step here."""
    subscriptions = Subscriptions(lambda _: None)
    call = _GatedSecondWrite()
    link = _link_on(call, subscriptions)
    serving = asyncio.create_task(link._serve_once())
    await call.first_write_started.wait()
    subscriptions.add(_Stream(), ["mm"], cancel_on_disconnect=True)  # a catch-up to send
    call.release.set()
    await asyncio.wait_for(call.second_write_started.wait(), 5)
    call.gate.set_result(None)
    serving.cancel()
    done, _ = await asyncio.wait({serving}, timeout=5)
    assert done == {serving}
    await link.close()


# --- a retry during a move keeps its place --------------------------------------------------


class _Table:
    """The assignment table a dispatcher reads, changed by the test (``owners``)."""

    def __init__(self, **owners: str) -> None:
        self.current = {
            symbol: Assignment(symbol, shard, AssignmentState.ACTIVE)
            for symbol, shard in owners.items()
        }

    def set(self, symbol: str, shard: str, state: AssignmentState, target: str = "") -> None:
        self.current[symbol] = Assignment(symbol, shard, state, target=target)

    def assignment(self, symbol: str) -> Assignment | None:
        return self.current.get(symbol)

    def view(self) -> ClusterView:
        return ClusterView(symbols=frozenset(self.current), assignments=dict(self.current))

    async def wait_for(self, predicate: Any, timeout: float) -> ClusterView:
        return self.view()

    async def refresh(self) -> ClusterView:
        return self.view()


class _Links:
    def __init__(self, links: dict[str, ShardLink]) -> None:
        self.links = links

    def get(self, shard_id: str) -> ShardLink | None:
        return self.links.get(shard_id)

    def find(self, shard_id: str) -> ShardLink | None:
        return self.links.get(shard_id)

    def all(self) -> list[ShardLink]:
        return list(self.links.values())


def _place(price: int, symbol: str = "BTC-USDT") -> orders_pb2.OrderCommand:
    return orders_pb2.OrderCommand(place_order=orders_pb2.PlaceOrder(
        symbol=symbol, account="mm", side=1, order_type=1, time_in_force=1, price=price,
        quantity=1))  # fmt: skip


def _dispatcher(table: _Table, links: dict[str, ShardLink]) -> Dispatcher:
    return Dispatcher(table, _Links(links), router_config())  # type: ignore[arg-type]


def _far() -> int:
    """A deadline (ns since the epoch) that no test here reaches."""
    return time.time_ns() + 5_000_000_000


def _links(*shards: str) -> dict[str, ShardLink]:
    hooks = _hooks(list)
    links = {s: ShardLink(s, "127.0.0.1:1", router_config(), hooks) for s in shards}
    for link in links.values():
        link.ready = True
    return links


async def _close(links: dict[str, ShardLink]) -> None:
    for link in links.values():
        link.ready = False
        await link.close()


def _ok() -> orders_pb2.CommandResult:
    return orders_pb2.CommandResult(report=orders_pb2.ExecutionReport(seq=1))


def _prices(link: ShardLink) -> list[int]:
    return [
        orders_pb2.OrderCommand.FromString(body).place_order.price
        for part in link._queue
        for body in part.bodies
    ]


async def _refused_then_retried_first(
    old: ShardLink, new: ShardLink, first: asyncio.Future[Any], second: asyncio.Future[Any]
) -> None:
    """The old owner refuses C1 (price 1): its retry reaches the new owner before C2."""
    refusal = orders_pb2.CommandResult(error=orders_pb2.CommandError(
        reason=RC.REJECT_CODE_NOT_OWNER, retryable=True))  # fmt: skip
    old._queue[0].answer(0, refusal)
    for _ in range(100):
        if len(_prices(new)) == 2:
            break
        await asyncio.sleep(0.01)
    assert _prices(new) == [1, 2]
    for part in new._queue:
        part.answer(0, _ok())
    await asyncio.wait_for(asyncio.gather(first, second), 5)


async def test_a_command_refused_by_the_old_owner_reaches_the_new_one_before_later_ones() -> None:
    """C1 went to shard A; the symbol then moved, C2 was buffered, and B became ACTIVE
    before A's refusal of C1 came back: C2 must not be drained to B ahead of C1's retry."""
    links = _links("shard-a", "shard-b")
    a, b = links["shard-a"], links["shard-b"]
    table = _Table(**{"BTC-USDT": "shard-a"})
    dispatcher = _dispatcher(table, links)
    far = _far()
    first = asyncio.ensure_future(dispatcher.execute([_place(1)], far))
    await asyncio.sleep(0)
    assert _prices(a) == [1]  # sent to A, not answered yet
    table.set("BTC-USDT", "shard-a", AssignmentState.MOVING, target="shard-b")
    second = asyncio.ensure_future(dispatcher.execute([_place(2)], far))
    await asyncio.sleep(0)
    assert dispatcher.buffers.count("BTC-USDT") == 1
    table.set("BTC-USDT", "shard-b", AssignmentState.ACTIVE)
    dispatcher.buffers.drain()  # what the router does on the view change
    assert _prices(b) == []  # held: C1 has not settled
    await _refused_then_retried_first(a, b, first, second)
    await _close(links)


async def test_a_slow_shard_in_the_same_request_does_not_hold_a_moved_symbol() -> None:
    """R1 sends BTC to A and ETH to D. A answers BTC; D is slow. BTC's buffer (it moved to
    B meanwhile) goes to B at once, not when D answers."""
    links = _links("shard-a", "shard-b", "shard-d")
    a, b, d = links["shard-a"], links["shard-b"], links["shard-d"]
    table = _Table(**{"BTC-USDT": "shard-a", "ETH-USDT": "shard-d"})
    dispatcher = _dispatcher(table, links)
    far = _far()
    first = asyncio.ensure_future(dispatcher.execute([_place(1), _place(9, "ETH-USDT")], far))
    await asyncio.sleep(0)
    assert (_prices(a), _prices(d)) == ([1], [9])
    table.set("BTC-USDT", "shard-a", AssignmentState.MOVING, target="shard-b")
    second = asyncio.ensure_future(dispatcher.execute([_place(2)], far))
    await asyncio.sleep(0)
    a._queue[0].answer(0, _ok())  # executed by A before it let go
    await asyncio.sleep(0)
    table.set("BTC-USDT", "shard-b", AssignmentState.ACTIVE)
    dispatcher.buffers.drain()
    assert _prices(b) == [2]  # D has not answered ETH yet
    b._queue[0].answer(0, _ok())
    d._queue[0].answer(0, _ok())
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    await _close(links)


async def test_a_failover_seen_while_a_command_is_unanswered_keeps_the_symbol_in_order() -> None:
    """C1 went to shard A; the table then named B the ACTIVE owner directly (a failover: no
    MOVING state, so no buffer yet). C2 must wait for C1's answer, and C1's retry reaches B
    first."""
    links = _links("shard-a", "shard-b")
    a, b = links["shard-a"], links["shard-b"]
    table = _Table(**{"BTC-USDT": "shard-a"})
    dispatcher = _dispatcher(table, links)
    far = _far()
    first = asyncio.ensure_future(dispatcher.execute([_place(1)], far))
    await asyncio.sleep(0)
    table.set("BTC-USDT", "shard-b", AssignmentState.ACTIVE)
    second = asyncio.ensure_future(dispatcher.execute([_place(2)], far))
    await asyncio.sleep(0)
    assert (_prices(a), _prices(b)) == ([1], [])  # C2 waits behind the unanswered C1
    await _refused_then_retried_first(a, b, first, second)
    assert dispatcher.buffers.count("BTC-USDT") == 0
    await _close(links)


async def test_commands_of_a_symbol_to_its_one_owner_are_not_held_back() -> None:
    """The same owner, an unanswered command: the next one goes straight to the link."""
    links = _links("shard-a")
    a = links["shard-a"]
    dispatcher = _dispatcher(_Table(**{"BTC-USDT": "shard-a"}), links)
    far = _far()
    first = asyncio.ensure_future(dispatcher.execute([_place(1)], far))
    second = asyncio.ensure_future(dispatcher.execute([_place(2)], far))
    await asyncio.sleep(0)
    assert _prices(a) == [1, 2] and dispatcher.buffers.count("BTC-USDT") == 0
    for part in a._queue:
        part.answer(0, _ok())
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    await _close(links)


async def test_a_command_drained_to_a_new_owner_is_tracked_like_one_sent_directly() -> None:
    """C1 was buffered during a move to B and drained there; B then failed over to C
    before refusing C1. C2, sent after, must not reach C ahead of C1's retry."""
    links = _links("shard-a", "shard-b", "shard-c")
    b, c = links["shard-b"], links["shard-c"]
    table = _Table(**{"BTC-USDT": "shard-a"})
    table.set("BTC-USDT", "shard-a", AssignmentState.MOVING, target="shard-b")
    dispatcher = _dispatcher(table, links)
    far = _far()
    first = asyncio.ensure_future(dispatcher.execute([_place(1)], far))
    await asyncio.sleep(0)
    table.set("BTC-USDT", "shard-b", AssignmentState.ACTIVE)
    dispatcher.buffers.drain()
    assert _prices(b) == [1]
    table.set("BTC-USDT", "shard-c", AssignmentState.ACTIVE)
    second = asyncio.ensure_future(dispatcher.execute([_place(2)], far))
    await asyncio.sleep(0)
    assert _prices(c) == []  # C2 waits behind the unanswered C1
    await _refused_then_retried_first(b, c, first, second)
    await _close(links)


async def test_a_caller_cancelled_as_its_refusal_arrives_leaves_nothing_held() -> None:
    """The refusal's callback runs after the cancelled request has finished: no retry
    will come, so the symbol must not stay held (every later move would stall it)."""
    links = _links("shard-a", "shard-b")
    a, b = links["shard-a"], links["shard-b"]
    table = _Table(**{"BTC-USDT": "shard-a"})
    dispatcher = _dispatcher(table, links)
    far = _far()
    first = asyncio.ensure_future(dispatcher.execute([_place(1)], far))
    await asyncio.sleep(0)
    refusal = orders_pb2.CommandResult(error=orders_pb2.CommandError(
        reason=RC.REJECT_CODE_SYMBOL_MOVING, retryable=True))  # fmt: skip
    first.cancel()  # the caller goes (a client cancel, a stream ending) ...
    a._queue[0].answer(0, refusal)  # ... in the same loop turn as the refusal
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.sleep(0)
    table.set("BTC-USDT", "shard-b", AssignmentState.ACTIVE)
    later = asyncio.ensure_future(dispatcher.execute([_place(2)], far))
    await asyncio.sleep(0)
    assert _prices(b) == [2]
    b._queue[0].answer(0, _ok())
    await asyncio.wait_for(later, 5)
    await _close(links)
