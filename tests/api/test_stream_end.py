"""A client's cancel is never taken for a clean half-close (api/stream_end.py).

Both sessions that serve cancel-on-disconnect streams (the router's Trade, the shard's
Trade and Execute) run over a real grpc.aio server on loopback. Without the wait for a late
cancel, about 1-5 % of cancels were judged clean, so 300 cancels catch it almost surely.
Nor is a half-close clean if a report overflowed the queue behind it (with a gated writer).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from api import stream_session
from api.stream_session import OrderedSession, run_session
from router.streams import TradeSession
from shard.streams import StreamSession
from tests.api.support import GatedContext, fill

CANCELS = 300
HALF_CLOSES = 4
Verdicts = list[bool]
Handler = Callable[[AsyncIterator[bytes], Any], Awaitable[None]]


def router_session() -> OrderedSession:
    session = TradeSession(inflight=8, write_timeout=5.0)
    session.cancel_on_disconnect = True
    return session


def shard_session() -> OrderedSession:
    session = StreamSession(inflight=8, write_timeout=5.0)
    session.cancel_on_disconnect = {"mm"}
    return session


def echo_handler(make_session: Callable[[], OrderedSession], verdicts: Verdicts) -> Handler:
    async def handler(requests: AsyncIterator[bytes], context: Any) -> None:
        session = make_session()

        async def read() -> None:
            async for request in requests:
                await session.enqueue(lambda request=request: _echo(request))

        async def close(clean: bool) -> None:
            verdicts.append(clean)

        await run_session(session, context, read, close)

    return handler


async def _echo(request: bytes) -> bytes:
    return request


def _same(raw: bytes) -> bytes:
    return raw


@pytest.mark.parametrize("make_session", [router_session, shard_session], ids=["router", "shard"])
async def test_a_cancel_after_the_last_answer_is_a_disconnect(
    make_session: Callable[[], OrderedSession],
) -> None:
    verdicts: Verdicts = []
    server = grpc.aio.server()
    handler = echo_handler(make_session, verdicts)
    method = grpc.stream_stream_rpc_method_handler(handler, _same, _same)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.T", {"S": method}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stream = channel.stream_stream("/t.T/S", request_serializer=_same,
                                           response_deserializer=_same)  # fmt: skip
            for _ in range(CANCELS):
                call = stream()
                await call.write(b"order")
                assert await call.read() == b"order"
                call.cancel()  # every answer is in: only the cancel tells it from a half-close
            for _ in range(HALF_CLOSES):
                call = stream()
                await call.write(b"order")
                assert await call.read() == b"order"
                await call.done_writing()
                assert await call.code() == grpc.StatusCode.OK
            for _ in range(100):  # bounded: ~5 s for the last clean-ups
                if len(verdicts) == CANCELS + HALF_CLOSES:
                    break
                await asyncio.sleep(0.05)
    finally:
        await server.stop(None)
    assert verdicts.count(False) == CANCELS
    assert verdicts.count(True) == HALF_CLOSES


async def test_an_overflow_queued_behind_the_end_is_no_clean_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client half-closes, then a maker report overflows the queue before the writer
    reaches the end: the report was dropped, so the stream did not end cleanly, and the
    client is told so (RESOURCE_EXHAUSTED, as for any overflow), not OK."""
    monkeypatch.setattr(stream_session, "UNSOLICITED_CAP", 1)
    session = OrderedSession(inflight=8, write_timeout=5.0)
    context = GatedContext()
    half_close = asyncio.Event()
    verdicts: Verdicts = []

    async def read() -> None:
        await half_close.wait()

    async def close(clean: bool) -> None:
        verdicts.append(clean)

    running = asyncio.ensure_future(run_session(session, context, read, close))  # type: ignore[arg-type]
    session.deliver(fill())  # the writer takes it and waits in its write
    await asyncio.sleep(0.01)
    half_close.set()  # the end is queued
    await asyncio.sleep(0.01)
    session.deliver(fill())  # queued behind the end (alone, so within any cap)
    session.deliver(fill())  # past the cap of one queued report: dropped
    assert session.closed
    context.gate.set()
    await asyncio.wait_for(running, 5)
    assert verdicts == [False]
    assert context.code == grpc.StatusCode.RESOURCE_EXHAUSTED
