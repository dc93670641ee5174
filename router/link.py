"""One long-lived ShardService.Execute stream per shard, with smart batching.

Callers hand in a ``Part`` (their commands for this shard, encoded once) and await its
future. A sender task takes everything queued, capped by count and bytes, into one
ExecuteRequest; at most ``link_inflight_batches`` batches are unanswered, so under load the
queue grows while the shard commits and the next batch carries more (no timers). A
receiver task resolves parts by correlation id (router-chosen, unique per link) and hands
unsolicited reports (correlation id 0) to the subscription fan-out.

When the stream breaks, sent commands are answered OUTCOME_UNKNOWN (the shard may have
executed them: the client retries with the same client_order_id, which is idempotent) and
unsent ones "not sent" (retryable, nothing happened); the link reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from api.auth import bearer, bearer_interceptors
from api.status import command_error
from matching.v1 import gateway_pb2_grpc, orders_pb2, shard_pb2, types_pb2
from router.config import RouterConfig
from router.errors import LinkClosed, LinkOverloaded
from router.wire import (
    control_requests,
    deadline_field,
    execute_request,
    frame,
    subscription_changes,
)
from telemetry import client_interceptors

log = logging.getLogger(__name__)

EXECUTE_METHOD = "/matching.v1.ShardService/Execute"
_BACKOFF = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
_STABLE_SECONDS = 1.0  # a stream that lived this long was a real connection
_WARN_EVERY = 30  # while a shard stays unreachable, one warning per this many attempts
_FRAME_OVERHEAD = 32  # tag, length, correlation id and deadline around a command's bytes
_DETACH_GRACE = 2.0  # seconds a detaching link waits for the shard to end the stream

CommandResult = orders_pb2.CommandResult
_RC = types_pb2.RejectCode


class Part:
    """Commands of one caller for one destination, answered together (one future)."""

    __slots__ = (
        "base",
        "bodies",
        "deadlines",
        "final",
        "future",
        "indices",
        "max_wait",
        "on_send",
        "remaining",
        "results",
        "sent",
        "seq",
        "shard_id",
        "timer",
    )

    def __init__(
        self, indices: list[int], bodies: list[bytes], deadlines: list[int], seq: int = 0
    ) -> None:
        self.seq = seq  # arrival order of the caller's request at the router (buffer order)
        self.indices = indices  # positions in the caller's request
        self.bodies = bodies  # each command encoded once (router.wire)
        self.deadlines = deadlines  # ns since the epoch, per command
        self.results: list[CommandResult | None] = [None] * len(bodies)
        self.remaining = len(bodies)
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.base = 0  # correlation id of bodies[0] on the link
        self.sent = 0  # how many were written to a stream
        self.final = False  # the router decided the outcome itself: never retried
        # Called with the link when a buffer hands the part over (router.routing tracks it).
        self.on_send: Callable[[ShardLink], None] | None = None
        self.shard_id = ""  # the shard that answered (retry decisions)
        self.timer: asyncio.TimerHandle | None = None  # buffer expiry
        self.max_wait = 0.0  # seconds it may wait in a buffer; 0: the buffer's bound

    def answer(self, index: int, result: CommandResult) -> None:
        if self.results[index] is None:
            self.results[index] = result
            self.remaining -= 1
            if not self.remaining and not self.future.done():
                self.future.set_result(None)

    def fail_unsent(self, error: orders_pb2.CommandError) -> None:
        """Answer the commands never written to a stream with ``error``; those in flight
        keep waiting for the shard's answer (or OUTCOME_UNKNOWN if the stream is lost)."""
        for i in range(self.sent, len(self.results)):
            if self.results[i] is None:
                self.answer(i, CommandResult(error=error))

    def fail(self, error: orders_pb2.CommandError, *, final: bool = False) -> None:
        """Answer every unanswered command with ``error``."""
        self.final = self.final or final
        for i, result in enumerate(self.results):
            if result is None:
                self.answer(i, CommandResult(error=error))


@dataclass(frozen=True)
class LinkHooks:
    ready: Callable[[ShardLink], None]  # the link (re)connected: drain buffers
    unsolicited: Callable[[list[CommandResult]], None]  # maker reports for subscribers
    subscriptions: Callable[[], list[shard_pb2.AccountSubscription]]  # state to (re)send
    released: Callable[[ShardLink, list[str]], None]  # symbols the shard let go (handovers)
    detach: Callable[[], list[bytes]]  # what to send before closing on purpose (close())


def grpc_options(config: RouterConfig) -> list[tuple[str, int]]:
    """Message limits and keepalive, the same as the shard's (shard.server.grpc_options)
    so that both ends agree; the router's server uses them too."""
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def channel_options(config: RouterConfig) -> list[tuple[str, int]]:
    """``grpc_options`` plus a short reconnect backoff: a restarted shard is found again
    within about a second."""
    return [
        *grpc_options(config),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    ]


class ShardLink:
    def __init__(self, shard_id: str, address: str, config: RouterConfig, hooks: LinkHooks) -> None:
        self.shard_id = shard_id
        self.address = address
        self.ready = False  # a stream is open: submit() accepts parts
        # Streams opened so far, and whether the last one is open (it may still carry
        # reports while closing: router/handovers.py).
        self.streams = 0
        self.receiving = False
        self._config = config
        self._hooks = hooks
        options = channel_options(config)
        self._channel = grpc.aio.insecure_channel(address, options=options)
        token = config.cluster_token  # what the shard requires, if it does (decision 0018)
        self._execute: Callable[[], _Call] = functools.partial(
            self._channel.stream_stream(
                EXECUTE_METHOD,
                request_serializer=None,  # requests are pre-encoded bytes (router.wire)
                response_deserializer=shard_pb2.ExecuteResponse.FromString,
            ),
            metadata=bearer(token) if token else None,
        )
        # Unary reads (GetOrder, GetOrderBook) are traced; the Execute stream is not (0005).
        self._read_channel = grpc.aio.insecure_channel(
            address,
            options=options,
            interceptors=[*client_interceptors(), *(bearer_interceptors(token) if token else [])],
        )
        self.reads = gateway_pb2_grpc.OrderGatewayServiceStub(self._read_channel)
        self._queue: deque[Part] = deque()
        self._pos = 0  # next unsent command of the queue's first part
        self._queued = 0  # unsent commands
        self._control: list[bytes] = []
        self._pending: dict[int, Part] = {}  # sent, unanswered: correlation id -> part
        self._next_id = 1
        self._batch_id = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._detaching = False
        self._detach_written = False  # the detach took its state: later controls are moot
        self._task: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        return self._queued

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"link-{self.shard_id}")

    def submit(self, part: Part) -> None:
        """Queue a part (synchronously, so callers keep their order). Raises LinkOverloaded
        when the bounded queue is full, LinkClosed when no stream is open."""
        if not self.ready:
            raise LinkClosed(self.shard_id)
        count = len(part.bodies)
        if self._queued + count > self._config.link_max_queued:
            raise LinkOverloaded(self.shard_id)
        part.base = self._next_id
        part.shard_id = self.shard_id
        self._next_id += count
        self._queue.append(part)
        self._queued += count
        self._wake.set()

    def send_control(self, messages: list[bytes]) -> None:
        """A subscription change. Dropped while down: connecting sends the whole state.
        Taken while detaching, until the detach is written: a client that ends cleanly
        meanwhile leaves the state the detach starts from, and must be unsubscribed too."""
        if self.ready or (self._detaching and not self._detach_written):
            self._control.extend(messages)
            self._wake.set()

    async def close(self, *, detach: bool = False) -> None:
        """Stop the link: what was sent is answered OUTCOME_UNKNOWN, the rest "not sent".

        ``detach``: the shard left membership while this router's clients may still be
        connected. The end of an Execute stream cancels the orders of every account still
        subscribed with cancel-on-disconnect (shard.proto), which is right when the router
        is gone and wrong here: so the link first unsubscribes every account whose clients
        are still here (not those whose cancel-on-disconnect is running), half-closes,
        and gives the shard ``_DETACH_GRACE`` to answer what it owes and end the stream. A
        shard that does not (frozen) is cut off; whether it read the message first is then
        up to the transport, and its symbols are being failed over (a new owner's epoch
        fences whatever it runs later)."""
        self._closing = True
        try:
            if detach and self.ready and self._task is not None:
                self._detaching = True
                self.ready = False  # nothing new; what was never sent is retried elsewhere
                self._fail_unsent()
                self._wake.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_DETACH_GRACE):
                        await asyncio.shield(self._task)
        finally:  # even if this close is itself cancelled
            if self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._lost("link closed")
            await self._channel.close()
            await self._read_channel.close()

    # --- the stream -------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        while not self._closing:
            began = loop.time()
            try:
                await self._serve_once()
            except (grpc.aio.AioRpcError, TimeoutError, OSError) as exc:
                if failures % _WARN_EVERY == 0:  # a shard that stays down: not every retry
                    log.warning("link to shard %s at %s: %s", self.shard_id, self.address,
                                _describe(exc))  # fmt: skip
            except Exception:  # the link must outlive any bug in one stream's handling
                log.exception("link to shard %s failed", self.shard_id)
            finally:
                self._lost("stream to the shard broke")
            # A stream that lived a while resets the backoff; one that dies at once does not.
            failures = 0 if loop.time() - began > _STABLE_SECONDS else failures + 1
            await asyncio.sleep(_BACKOFF[min(failures, len(_BACKOFF) - 1)])

    async def _serve_once(self) -> None:
        timeout = self._config.link_connect_timeout
        async with asyncio.timeout(timeout):
            await self._channel.channel_ready()
        call = self._execute()
        self.streams += 1
        self.receiving = True
        try:
            state = self._hooks.subscriptions()
            for message in control_requests(router_id=self._config.router_id, subscribe=state):
                await _write(call, message, timeout)
            await self._serve(call, state)
        finally:
            self.ready = self.receiving = False
            call.cancel()

    async def _serve(self, call: _Call, sent: list[shard_pb2.AccountSubscription]) -> None:
        slots = asyncio.Semaphore(self._config.link_inflight_batches)
        # The first message carried the state as it was (``sent``); changes made while it was
        # being written were dropped (not ready yet): send the difference first.
        self._control = subscription_changes(sent, self._hooks.subscriptions())
        self.ready = True
        log.info("link to shard %s at %s is up", self.shard_id, self.address)
        self._hooks.ready(self)
        sender = asyncio.create_task(self._send_loop(call, slots))
        receiver = asyncio.create_task(self._receive_loop(call, slots))
        try:
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.warning("link to shard %s ended: %s", self.shard_id,
                                _describe(task.exception()))  # fmt: skip
        finally:
            self.ready = False
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)

    async def _send_loop(self, call: _Call, slots: asyncio.Semaphore) -> None:
        timeout = self._config.link_write_timeout  # a stuck shard must not stall us forever
        while True:
            if self._control:
                messages, self._control = self._control, []
                for message in messages:
                    await _write(call, message, timeout)
            elif self._detaching:
                await self._detach(call, timeout)
            elif not self._queue or slots.locked():  # at most link_inflight_batches unanswered
                self._wake.clear()
                await self._wake.wait()  # not in acquire(): a control or a detach goes first
            else:
                await slots.acquire()  # free: returns at once
                request = self._take()
                if request is None:
                    slots.release()
                else:
                    await _write(call, request, timeout)

    async def _detach(self, call: _Call, timeout: float) -> None:
        """Unsubscribe the clients still here, half-close, and wait: the receiver ends the
        stream once the shard has answered the batches in flight and ended it (close())."""
        self._detach_written = True
        for message in self._hooks.detach():
            await _write(call, message, timeout)
        async with asyncio.timeout(timeout):
            await call.done_writing()
        await asyncio.get_running_loop().create_future()  # never done: cancelled with _serve

    def _take(self) -> bytes | None:
        """Everything queued up to the caps, as one ExecuteRequest."""
        max_commands = self._config.batch_max_commands
        max_bytes = self._config.batch_max_bytes
        framed: list[bytes] = []
        nbytes = 0
        queue, pending = self._queue, self._pending
        last_deadline, deadline_bytes = 0, b""
        while queue and len(framed) < max_commands:
            part, start = queue[0], self._pos
            end = len(part.bodies)
            pos = start
            if not part.future.done():  # done: the caller gave up; skip its unsent rest
                bodies, deadlines, base = part.bodies, part.deadlines, part.base
                while pos < end and len(framed) < max_commands:
                    body = bodies[pos]
                    size = len(body) + _FRAME_OVERHEAD
                    if framed and nbytes + size > max_bytes:
                        break
                    if deadlines[pos] != last_deadline:  # usually one per caller's request
                        last_deadline = deadlines[pos]
                        deadline_bytes = deadline_field(last_deadline)
                    framed.append(frame(body, base + pos, deadline_bytes))
                    pending[base + pos] = part
                    nbytes += size
                    pos += 1
                part.sent = pos
            else:
                pos = end
            self._queued -= pos - start
            if pos < end:
                self._pos = pos
                break
            queue.popleft()
            self._pos = 0
        if not framed:
            return None
        self._batch_id += 1
        return execute_request(self._batch_id, framed)

    async def _receive_loop(self, call: _Call, slots: asyncio.Semaphore) -> None:
        pending = self._pending
        while True:
            response = await call.read()
            if not isinstance(response, shard_pb2.ExecuteResponse):
                return  # grpc.aio.EOF: the shard ended the stream
            unsolicited: list[CommandResult] = []
            for result in response.results:
                cid = result.correlation_id
                if not cid:
                    unsolicited.append(result)
                    continue
                part = pending.pop(cid, None)
                if part is not None:
                    part.answer(cid - part.base, result)
            if unsolicited:
                self._hooks.unsolicited(unsolicited)
            if response.released:
                self._hooks.released(self, [r.symbol for r in response.released])
            if response.batch_id:
                slots.release()
                self._wake.set()

    def _lost(self, why: str) -> None:
        """No stream: answer what was sent OUTCOME_UNKNOWN and what was not "not sent"."""
        self.ready = False
        pending, self._pending = self._pending, {}
        if pending:
            unknown = command_error(
                _RC.REJECT_CODE_OUTCOME_UNKNOWN,
                f"{why} before the answer (shard {self.shard_id}): look up or retry"
                " by client_order_id",
            )
            for cid, part in pending.items():
                part.answer(cid - part.base, CommandResult(error=unknown))
        self._fail_unsent()
        self._control.clear()

    def _fail_unsent(self) -> None:
        if self._queue:
            not_sent = command_error(
                _RC.REJECT_CODE_SHUTTING_DOWN, f"shard {self.shard_id} unreachable; not sent"
            )
            for part in self._queue:
                if not part.sent:
                    part.shard_id = ""  # never reached the shard: the retry need not wait
                part.fail_unsent(not_sent)  # the head part's sent commands await answers
        self._queue.clear()
        self._pos = self._queued = 0


_Call = grpc.aio.StreamStreamCall[bytes, shard_pb2.ExecuteResponse]


async def _write(call: _Call, message: bytes, timeout: float) -> None:
    """One write, bounded by ``timeout``. asyncio.timeout, not asyncio.wait_for: on Python
    3.11 wait_for returns the write's result when its task is cancelled just as the write
    completes, and the send loop then went on waiting for work instead of stopping (a link
    close, and so a router stop, hung; test_link_units has the interleaving)."""
    async with asyncio.timeout(timeout):
        await call.write(message)


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return type(exc).__name__
