"""The proxy's side of the raw two-hop pair: ONE Execute stream with smart batching.

Callers queue their serialized commands; a sender takes everything queued (at most 1,000
commands, the shard's limit) into one ExecuteRequest while at most ``LINK_INFLIGHT`` batches
are unanswered, so batches grow under load as the router's do. Each command is framed with
the proxy's correlation id and deadline appended as raw protobuf fields (a parser keeps the
last value of a field, so they override the caller's), which is one serialization per
command and no per-field copies. Answers come back in command order and each request gets
its slice, with its callers' own correlation ids restored.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc

from api.protowire import varint
from matching.v1 import orders_pb2, shard_pb2
from router.config import RouterConfig

from .errors import BenchError

log = logging.getLogger(__name__)

BATCH_MAX_COMMANDS = 1_000  # a shard refuses bigger ExecuteRequests (api.limits)
LINK_INFLIGHT = RouterConfig.link_inflight_batches  # the router's own limit: same batching
LINK_MAX_QUEUED = 100_000  # unsent commands; beyond: the caller is refused
MAX_MESSAGE_BYTES = 16 << 20
UPSTREAM_CONNECT_TIMEOUT = 10.0  # the proxy's first connection to the server

_EXECUTE = "/matching.v1.ShardService/Execute"
_CORRELATION_ID = b"\x08"  # ShardCommand field 1, varint
_DEADLINE = b"\x10"  # ShardCommand field 2, varint
_BATCH_ID = b"\x10"  # ExecuteRequest field 2, varint
_COMMANDS = b"\x1a"  # ExecuteRequest field 3, length-delimited


class PassthroughError(BenchError):
    """The proxy's Execute stream is gone or its queue is full: the caller is not answered."""


def grpc_options() -> list[tuple[str, int]]:
    """Message limits and keepalive of the real processes (shard/server.py)."""
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


@dataclass(slots=True)
class Pending:
    """One caller request on the link: its framed commands and their callers' ids."""

    framed: bytes
    caller_ids: list[int]
    future: asyncio.Future[list[orders_pb2.CommandResult]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class UpstreamLink:
    """ONE long-lived Execute stream to the server, with smart batching (see module doc)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._queue: deque[Pending] = deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(LINK_INFLIGHT)
        self._inflight: dict[int, list[Pending]] = {}
        self._next_id = itertools.count(1)
        self._broken: str = ""
        self._channel: grpc.aio.Channel | None = None
        self._receiver: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.target, options=grpc_options())
        async with asyncio.timeout(UPSTREAM_CONNECT_TIMEOUT):
            await self._channel.channel_ready()
        execute = self._channel.stream_stream(
            _EXECUTE,
            request_serializer=bytes,  # frames are built as bytes (module doc)
            response_deserializer=shard_pb2.ExecuteResponse.FromString,
        )
        self._receiver = asyncio.create_task(self._receive(execute(self._requests())))

    async def close(self) -> None:
        self._fail("proxy shutting down")
        if self._receiver is not None:
            self._receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiver
        if self._channel is not None:
            await self._channel.close()

    def submit(self, bodies: Iterable[bytes], caller_ids: list[int], deadline_ns: int) -> Pending:
        """Queue one request's serialized commands; its future gets their results in order."""
        ids, tail = self._next_id, _DEADLINE + varint(deadline_ns)
        framed = b"".join(
            _COMMANDS + varint(len(body) + len(own) + len(tail)) + body + own + tail
            for body, own in ((b, _CORRELATION_ID + varint(next(ids))) for b in bodies)
        )
        pending = Pending(framed, caller_ids)
        if self._broken:
            pending.future.set_exception(PassthroughError(self._broken))
        elif self._queued + len(caller_ids) > LINK_MAX_QUEUED:
            pending.future.set_exception(PassthroughError("upstream queue full"))
        else:
            self._queue.append(pending)
            self._queued += len(caller_ids)
            self._wakeup.set()
        return pending

    async def _requests(self) -> AsyncIterator[bytes]:
        yield shard_pb2.ExecuteRequest(
            options=shard_pb2.ExecuteStreamOptions(router_id="passthrough")
        ).SerializeToString()
        batch_ids = itertools.count(1)
        while not self._broken:
            await self._slots.acquire()
            while not self._queue and not self._broken:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self._broken:
                return
            batch = [self._queue.popleft()]
            count = len(batch[0].caller_ids)
            while self._queue and count + len(self._queue[0].caller_ids) <= BATCH_MAX_COMMANDS:
                batch.append(self._queue.popleft())
                count += len(batch[-1].caller_ids)
            self._queued -= count
            batch_id = next(batch_ids)
            self._inflight[batch_id] = batch
            yield _BATCH_ID + varint(batch_id) + b"".join(p.framed for p in batch)

    async def _receive(self, call: Any) -> None:
        try:
            async for response in call:
                batch = self._inflight.pop(response.batch_id, None)
                if batch is None:
                    continue  # unsolicited reports: this proxy subscribes no account
                self._slots.release()
                _answer(batch, response.results)
            self._fail("the server ended the Execute stream")
        except grpc.aio.AioRpcError as exc:
            self._fail(f"Execute stream failed: {exc.code().name} {exc.details()}")

    def _fail(self, reason: str) -> None:
        if self._broken:
            return
        self._broken = reason
        log.warning("passthrough link to %s broken: %s", self.target, reason)
        self._wakeup.set()
        waiting = [p for batch in self._inflight.values() for p in batch] + list(self._queue)
        self._inflight.clear()
        self._queue.clear()
        for pending in waiting:
            if not pending.future.done():
                pending.future.set_exception(PassthroughError(reason))


def _answer(batch: list[Pending], results: Any) -> None:
    """Hand each request its slice of the batch's results, with the callers' own ids back."""
    if len(results) != sum(len(p.caller_ids) for p in batch):
        error = PassthroughError(f"{len(results)} results for a batch of other size")
        for pending in batch:
            pending.future.set_exception(error)
        return
    start = 0
    for pending in batch:
        n = len(pending.caller_ids)
        mine = results[start : start + n]
        start += n
        for res, caller_id in zip(mine, pending.caller_ids, strict=True):
            res.correlation_id = caller_id
        if not pending.future.done():
            pending.future.set_result(mine)
