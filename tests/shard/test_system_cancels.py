"""Held system-cancel reports (shard/system_cancels.py): each router gets one once, within
the hold time; the hold is bounded in time and count. And what Subscribers sends a stream
after a commit (shard/streams.py)."""

from __future__ import annotations

import asyncio

import grpc

from matching.v1 import orders_pb2, shard_pb2, types_pb2
from shard import edge
from shard.engine import MassCancel, MatchingEngine, Report, SymbolSpec
from shard.streams import StreamSession, Subscribers, split
from shard.system_cancels import HeldReports


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def report(seq: int) -> orders_pb2.CommandResult:
    return orders_pb2.CommandResult(report=orders_pb2.ExecutionReport(account="mm", seq=seq))


def seqs(results: list[orders_pb2.CommandResult]) -> list[int]:
    return [r.report.seq for r in results]


def test_each_router_takes_a_held_report_once_unless_it_was_told_at_commit() -> None:
    held = HeldReports(hold_seconds=60, cap=10, clock=Clock())
    held.hold("mm", report(1), had={"r2"})
    held.hold("mm", report(2), had=set())
    assert seqs(held.take("mm", "r1")) == [1, 2]
    assert held.take("mm", "r1") == []
    assert seqs(held.take("mm", "r2")) == [2]
    assert held.take("other", "r1") == []


def test_held_reports_expire_after_the_hold_time() -> None:
    clock = Clock()
    held = HeldReports(hold_seconds=60, cap=10, clock=clock)
    held.hold("mm", report(1), had=set())
    clock.now = 30.0
    held.hold("mm", report(2), had=set())
    clock.now = 60.0
    assert seqs(held.take("mm", "r1")) == [2]
    clock.now = 90.0
    assert held.take("mm", "r3") == [] and len(held) == 0


def test_the_hold_is_capped_oldest_first() -> None:
    held = HeldReports(hold_seconds=60, cap=3, clock=Clock())
    dropped: list[float] = []
    held.on_drop = dropped.append  # the metrics count them
    for seq in range(1, 6):
        held.hold("mm" if seq % 2 else "mm2", report(seq), had=set())
    assert len(held) == 3
    assert seqs(held.take("mm", "r1")) == [3, 5]
    assert seqs(held.take("mm2", "r1")) == [4]
    assert sum(dropped) == 2


# --- Subscribers: what reaches the streams (shard/streams.py) -----------------------------

SYMBOL = "BTC-USDT"


class Recorder:
    """The part of a StreamSession that Subscribers uses; it records each message."""

    def __init__(self, router_id: str, *, cut_off: bool = False) -> None:
        self.router_id = router_id
        self.accounts: set[str] = set()
        self.closed = False
        self.messages: list[list[orders_pb2.CommandResult]] = []
        self._cut_off = cut_off  # overflows on its first message, as a stalled reader does

    def deliver(self, message: list[orders_pb2.CommandResult]) -> None:
        if self._cut_off:
            self.closed = True
        if not self.closed:
            self.messages.append(message)


def wrap(results: list[orders_pb2.CommandResult], _: object) -> object:
    return results


def place(engine: MatchingEngine, account: str, side: int, price: int, qty: int) -> Report:
    pb = orders_pb2.PlaceOrder(
        symbol=SYMBOL, account=account, client_order_id=f"{account}-{price}", side=side,  # type: ignore[arg-type]
        order_type=types_pb2.ORDER_TYPE_LIMIT, time_in_force=types_pb2.TIME_IN_FORCE_GTC,
        stp_mode=types_pb2.STP_MODE_EXPIRE_MAKER,
        price=price, quantity=qty,
    )  # fmt: skip
    return engine.execute(edge.place_from_pb(pb))


def mm_cancelled() -> tuple[MassCancel, Report]:
    """A cancel-on-disconnect's mass cancel of mm's one resting order, and its outcome."""
    engine = MatchingEngine()
    engine.add_symbol(SymbolSpec(SYMBOL, 1))
    place(engine, "mm", types_pb2.SIDE_SELL, 100, 5)
    cancel = MassCancel(SYMBOL, "mm")
    return cancel, engine.execute(cancel)


def kinds(message: list[orders_pb2.CommandResult]) -> list[tuple[int, int]]:
    return [(r.report.kind, r.report.seq) for r in message]


def test_a_batchs_maker_fill_and_system_cancel_reach_a_stream_in_order() -> None:
    """A taker fills part of mm's order, then mm's cancel-on-disconnect cancels the rest, in
    one batch: the fill (seq 3) then the cancel (seq 4). The cancel went out first, and a
    client applying them in arrival order saw the order rest again."""
    engine = MatchingEngine()
    engine.add_symbol(SymbolSpec(SYMBOL, 1))
    resting = place(engine, "mm", types_pb2.SIDE_SELL, 100, 5)
    other = place(engine, "mm", types_pb2.SIDE_SELL, 101, 5)
    taker = place(engine, "t", types_pb2.SIDE_BUY, 100, 2)
    cancel = MassCancel(SYMBOL, "mm")
    cancelled = engine.execute(cancel)
    assert cancelled.expired == (resting.order_id, other.order_id)
    subscribers = Subscribers(HeldReports(clock=Clock()))
    stream = Recorder("r1")
    subscribers.subscribe(stream, wrap, ["mm"])  # type: ignore[arg-type]
    taker_cmd = edge.place_from_pb(orders_pb2.PlaceOrder())
    subscribers.publish(iter([(taker_cmd, taker, False), (cancel, cancelled, True)]))
    fill, system = orders_pb2.REPORT_KIND_MAKER_FILL, orders_pb2.REPORT_KIND_SYSTEM_CANCEL
    assert [kinds(m) for m in stream.messages] == [[(fill, taker.seq), (system, cancelled.seq)]]
    assert taker.seq < cancelled.seq


def test_a_stream_cut_off_before_it_was_told_leaves_the_report_held_for_its_router() -> None:
    cancel, cancelled = mm_cancelled()
    subscribers = Subscribers(HeldReports(clock=Clock()))
    stalled = Recorder("r1", cut_off=True)
    subscribers.subscribe(stalled, wrap, ["mm"])  # type: ignore[arg-type]
    subscribers.publish(iter([(cancel, cancelled, True)]))
    assert stalled.messages == []
    again = Recorder("r1", cut_off=True)  # cut off while it is told on subscribing, too
    subscribers.subscribe(again, wrap, ["mm"])  # type: ignore[arg-type]
    last = Recorder("r1")
    subscribers.subscribe(last, wrap, ["mm", "other"])  # type: ignore[arg-type]
    assert [kinds(m) for m in last.messages] == [
        [(orders_pb2.REPORT_KIND_SYSTEM_CANCEL, cancelled.seq)]
    ]


async def test_a_stream_that_ends_with_the_report_unwritten_gives_it_back_to_its_router() -> None:
    """Queued, then the stream ended (its link broke) before the writer reached it: the
    router was not told, so the report is held for it again."""
    cancel, cancelled = mm_cancelled()
    subscribers = Subscribers(HeldReports(clock=Clock()))
    session = StreamSession(inflight=4, write_timeout=1.0)
    session.router_id = "r1"
    subscribers.subscribe(session, _execute_response, ["mm"])
    told = Recorder("r2")
    subscribers.subscribe(told, wrap, ["mm"])  # type: ignore[arg-type]
    subscribers.publish(iter([(cancel, cancelled, True)]))
    session.close()  # what run_session does when the stream ends, written or not
    subscribers.unsubscribe_all(session)
    assert [kinds(m) for m in take_on_subscribe(subscribers, "r1")] == [
        [(orders_pb2.REPORT_KIND_SYSTEM_CANCEL, cancelled.seq)]
    ]
    assert take_on_subscribe(subscribers, "r2") == []  # its stream had it


class _StalledContext:
    """A call whose every write takes longer than the session waits for one."""

    def __init__(self) -> None:
        self.code: object = None

    async def write(self, _: object) -> None:
        await asyncio.sleep(0.3)

    def set_code(self, code: object) -> None:
        self.code = code

    def set_details(self, _: str) -> None:
        pass


async def test_a_report_whose_write_stalled_is_held_again_and_sent_to_the_routers_new_stream() -> (
    None
):
    """The write timed out (the stream is cut off): the report may never have left, so it
    is held for the router again, and a stream of that router subscribed meanwhile gets it."""
    cancel, cancelled = mm_cancelled()
    subscribers = Subscribers(HeldReports(clock=Clock()))
    session = StreamSession(inflight=4, write_timeout=0.05)
    session.router_id = "r1"
    subscribers.subscribe(session, _execute_response, ["mm"])
    subscribers.publish(iter([(cancel, cancelled, True)]))
    context = _StalledContext()
    assert not await session.write_all(context)  # type: ignore[arg-type]
    assert context.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    reconnected = Recorder("r1")  # the router's next stream, before this end is handled
    subscribers.subscribe(reconnected, wrap, ["mm"])  # type: ignore[arg-type]
    assert reconnected.messages == []
    subscribers.unsubscribe_all(session)
    assert [kinds(m) for m in reconnected.messages] == [
        [(orders_pb2.REPORT_KIND_SYSTEM_CANCEL, cancelled.seq)]
    ]
    assert take_on_subscribe(subscribers, "r1") == []  # told once


def _execute_response(results: list[orders_pb2.CommandResult], _: object) -> object:
    return shard_pb2.ExecuteResponse(results=results)


def take_on_subscribe(
    subscribers: Subscribers, router_id: str
) -> list[list[orders_pb2.CommandResult]]:
    stream = Recorder(router_id)
    subscribers.subscribe(stream, wrap, ["mm"])  # type: ignore[arg-type]
    return stream.messages


def test_a_streams_reports_are_split_into_bounded_messages_in_order() -> None:
    results = [report(seq) for seq in range(1, 8)]
    size = results[0].ByteSize()
    assert [seqs(m) for m in split(results, budget=3 * size)] == [[1, 2, 3], [4, 5, 6], [7]]
    assert [seqs(m) for m in split(results[:1], budget=1)] == [[1]]  # larger alone
    assert list(split([])) == []
