"""A stream's output keeps each symbol's reports in seq order, answers in request order.

Driven through the session both the router's and the shard's streams use
(api/stream_session.py), with a recording context in place of a gRPC call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from api.stream_session import OrderedSession
from matching.v1 import gateway_pb2, orders_pb2


class Recorder:
    def __init__(self) -> None:
        self.written: list[list[tuple[str, int]]] = []

    async def write(self, message: Any) -> None:
        self.written.append([(r.report.symbol, r.report.seq) for r in message.results])


def reports(*seqs: tuple[str, int]) -> list[orders_pb2.CommandResult]:
    return [
        orders_pb2.CommandResult(report=orders_pb2.ExecutionReport(symbol=symbol, seq=seq))
        for symbol, seq in seqs
    ]


def deliver(session: OrderedSession, results: list[orders_pb2.CommandResult]) -> None:
    session.deliver(gateway_pb2.TradeResponse(results=results))


async def run(
    session: OrderedSession, script: Callable[[Callable[..., Awaitable[None]]], Any]
) -> list[list[tuple[str, int]]]:
    """``script(answer)`` queues answers (``answer(gate, *seqs)``) and delivers fills."""
    recorder = Recorder()

    async def answer(gate: asyncio.Event, *seqs: tuple[str, int]) -> None:
        async def work() -> Any:
            await gate.wait()
            return gateway_pb2.TradeResponse(results=reports(*seqs))

        await session.enqueue(work)

    writer = asyncio.ensure_future(session.write_all(recorder))
    await script(answer)
    session.finish()
    await asyncio.wait_for(writer, 5)
    return recorder.written


async def test_a_fill_committed_before_an_answer_is_written_before_it() -> None:
    """The maker's own command runs in the batch after the taker that filled it: the fill
    (seq 10) arrives while the command's answer (seq 11) is still queued ahead of it."""
    session = OrderedSession(8, 1.0)

    async def script(answer: Callable[..., Awaitable[None]]) -> None:
        gate = asyncio.Event()
        await answer(gate, ("BTC", 11))
        deliver(session, reports(("BTC", 10)))
        deliver(session, reports(("ETH", 3)))  # another symbol: keeps its place
        deliver(session, reports(("BTC", 12)))  # after the answer: stays after it
        gate.set()

    assert await run(session, script) == [
        [("BTC", 10)],
        [("BTC", 11)],
        [("ETH", 3)],
        [("BTC", 12)],
    ]


async def test_a_fill_committed_after_an_answer_stays_after_it() -> None:
    session = OrderedSession(8, 1.0)

    async def script(answer: Callable[..., Awaitable[None]]) -> None:
        first, second = asyncio.Event(), asyncio.Event()
        await answer(first, ("BTC", 9))
        await answer(second, ("ETH", 20), ("BTC", 14))
        deliver(session, reports(("BTC", 10)))
        deliver(session, reports(("BTC", 15)))
        second.set()
        await asyncio.sleep(0.01)
        first.set()

    assert await run(session, script) == [
        [("BTC", 9)],
        [("BTC", 10)],  # before the second answer (BTC 14), after the first (BTC 9)
        [("ETH", 20), ("BTC", 14)],
        [("BTC", 15)],
    ]


async def test_a_long_queue_of_two_symbols_splits_around_an_answer_in_order() -> None:
    """A slow reader's queue: the answer takes every earlier report of its symbol ahead of
    it, in queue order, and leaves the other symbol's (equal messages included) in place."""
    session = OrderedSession(8, 1.0)
    n = 300

    async def script(answer: Callable[..., Awaitable[None]]) -> None:
        gate = asyncio.Event()
        await answer(gate, ("BTC", n + 1))
        for i in range(1, n + 1):
            deliver(session, reports(("BTC", i)))
            deliver(session, reports(("ETH", i // 2)))  # pairs of equal messages
        gate.set()

    assert await run(session, script) == [
        *([("BTC", i)] for i in range(1, n + 1)),
        [("BTC", n + 1)],
        *([("ETH", i // 2)] for i in range(1, n + 1)),
    ]
