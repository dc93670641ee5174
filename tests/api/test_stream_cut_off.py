"""A stream cut off for a stalled reader starts no more of its requests.

Its clean-up (cancel-on-disconnect, a mass cancel of its accounts) begins at the cut-off,
while the stalled write lingers. A request read or started after that would place an order
that rests after the protective mass cancel ran, so the session must stop reading and
start nothing more. Driven through the session the router's and the shard's streams use,
with a call whose writes wait for a gate (the stall).
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from api.stream_output import StreamOutput
from api.stream_session import OrderedSession, run_session
from matching.v1 import gateway_pb2, orders_pb2
from tests.api.support import GatedContext, fill

WRITE_TIMEOUT = 0.05
BOUND = 5.0  # seconds: every wait of these tests


async def test_requests_sent_after_a_cut_off_start_nothing() -> None:
    session = OrderedSession(inflight=8, write_timeout=WRITE_TIMEOUT)
    context = GatedContext()
    requests: asyncio.Queue[int] = asyncio.Queue()
    started: list[int] = []
    cleaned_up = asyncio.Event()

    async def work(n: int) -> Any:
        started.append(n)
        return n

    async def read() -> None:
        while True:
            n = await requests.get()
            await session.enqueue(lambda n=n: work(n))

    async def close(clean: bool) -> None:
        cleaned_up.set()

    running = asyncio.ensure_future(run_session(session, context, read, close))  # type: ignore[arg-type]
    session.deliver(fill())  # the writer takes it and stalls in its write
    await asyncio.wait_for(cleaned_up.wait(), BOUND)  # cut off: the clean-up has begun
    for n in range(5):  # the client goes on sending while the stalled write lingers
        requests.put_nowait(n)
    await asyncio.sleep(0.05)
    assert started == [], "requests read after the cut-off were started"
    context.gate.set()
    await asyncio.wait_for(running, BOUND)
    assert context.code == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_request_waiting_for_a_slot_starts_nothing_once_closed() -> None:
    output = StreamOutput(inflight=1, unsolicited_cap=10)
    hold = asyncio.Event()
    started: list[str] = []

    async def work(name: str) -> str:
        started.append(name)
        await hold.wait()
        return name

    await output.put_answer(lambda: work("first"))  # takes the only slot
    waiting = asyncio.ensure_future(output.put_answer(lambda: work("second")))
    await asyncio.sleep(0.01)
    assert started == ["first"] and not waiting.done()
    output.close()  # cancels "first" and gives its slot back
    await asyncio.wait_for(waiting, BOUND)
    assert started == ["first"]
    assert len(output) == 0


def test_the_unsolicited_cap_counts_reports_not_messages() -> None:
    """A message may carry a whole batch's reports for the stream: counting messages let a
    slow reader's queue hold the cap times a batch."""
    output = StreamOutput(inflight=1, unsolicited_cap=10)
    big = gateway_pb2.TradeResponse(results=[orders_pb2.CommandResult()] * 8)
    assert output.put_unsolicited(big)
    assert output.put_unsolicited(fill()) and output.put_unsolicited(fill())  # 10 reports
    assert not output.put_unsolicited(fill())


def test_a_message_larger_than_the_cap_is_taken_into_an_empty_queue() -> None:
    output = StreamOutput(inflight=1, unsolicited_cap=10)
    huge = gateway_pb2.TradeResponse(results=[orders_pb2.CommandResult()] * 50)
    assert output.put_unsolicited(huge)
    assert not output.put_unsolicited(fill())
