"""A gRPC load generator: market-maker style Trade streams carrying batches of commands.

Each client owns one account and a seeded flow of ~60 % passive limits near the touch,
30 % cancels (by client order id, of its own earlier orders) and 10 % marketable orders.
Two modes:
- open loop: messages are due at a fixed rate; latency is measured from the time a message
  was *due*, not sent, so a stalled server cannot hide its backlog (no coordinated omission);
- closed loop: each client keeps ``window`` messages in flight, as fast as answers return.
Every accepted placement is recorded, for reconciliation against the database.

Benchmarks prepare their messages before the clock starts (``ClientFlow.prepare``: built and
serialized up front) and count the answers after it stops, so that the measured window holds
only what the system under test costs its clients: sending and receiving (building a command
costs the generator ~5 us, as much as the shard spends on it). Live displays (``make run``)
generate and count as they go.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import grpc

from matching.v1 import gateway_pb2, orders_pb2, types_pb2

MID = 1_000_000
# Closed-loop runs prepare this many orders/s worth of messages: a system faster than this
# runs out of them before the duration ends (LoadResult.exhausted says so).
MAX_RATE = 100_000.0
ECHO_MESSAGES = 200  # distinct prepared messages per stream against an echo server


@dataclass
class LoadResult:
    orders: int = 0
    errors: int = 0
    fills: int = 0  # fills reported to takers
    latencies_ms: list[float] = field(default_factory=list)  # one per message
    acked_order_ids: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0
    rpc_failures: list[str] = field(default_factory=list)
    error_reasons: Counter[str] = field(default_factory=Counter)
    # (perf_counter when the answer arrived, commands it answered), one per latency: the
    # throughput-and-latency-over-time record of the cluster benchmark.
    acks: list[tuple[float, int]] = field(default_factory=list)
    # A closed-loop run used up its prepared messages: the system may be faster than measured.
    exhausted: bool = False
    started: float = 0.0  # perf_counter when the (first) stream started

    def merge(self, other: LoadResult) -> None:
        self.orders += other.orders
        self.errors += other.errors
        self.fills += other.fills
        self.latencies_ms += other.latencies_ms
        self.acked_order_ids += other.acked_order_ids
        self.rpc_failures += other.rpc_failures
        self.error_reasons += other.error_reasons
        self.acks += other.acks
        self.exhausted |= other.exhausted
        self.started = min(self.started, other.started) if self.started else other.started


class Prepared(NamedTuple):
    """One message built ahead of a run: its wire bytes and, per command, whether it places."""

    payload: bytes
    placements: bytes  # one byte per command: 1 = place_order


_TRADE_PATH = "/matching.v1.OrderGatewayService/Trade"


class ClientFlow:
    """Commands for one client's account, cancels naming its own earlier client ids.

    Like a market maker, a client keeps at most ``max_open`` quotes out: past it, it cancels
    before it quotes again (at steady state ~45 % quotes, ~45 % cancels, 10 % marketable), so
    a long run meets books of a steady depth instead of ever deeper ones."""

    def __init__(
        self, client: int, symbols: list[str], seed: int, run: str = "", max_open: int = 2_500
    ) -> None:
        self.rng = random.Random(seed * 1_000 + client)
        # Client order ids are unique per account forever: each run trades its own accounts.
        self.account = f"mm-{run or seed}-{client}"
        self.symbols = symbols
        self.placed: list[tuple[str, str]] = []  # (symbol, client order id)
        self.max_open = max_open
        self.n = 0

    def message(self, size: int) -> list[orders_pb2.OrderCommand]:
        return [self._command() for _ in range(size)]

    def prepare(self, size: int, count: int) -> list[Prepared]:
        """``count`` messages of ``size`` commands, serialized (built before a run starts)."""
        return [self.prepared(size) for _ in range(count)]

    def prepared(self, size: int) -> Prepared:
        """The next message of ``size`` commands, serialized."""
        cmds = self.message(size)
        kinds = bytes(c.WhichOneof("command") == "place_order" for c in cmds)
        return Prepared(gateway_pb2.TradeRequest(commands=cmds).SerializeToString(), kinds)

    def _command(self) -> orders_pb2.OrderCommand:
        r, rng = self.rng.random(), self.rng
        self.n += 1
        if (r < 0.3 or len(self.placed) >= self.max_open) and self.placed:
            symbol, cloid = self.placed.pop(rng.randrange(len(self.placed)))
            return orders_pb2.OrderCommand(
                correlation_id=self.n,
                cancel_order=orders_pb2.CancelOrder(
                    symbol=symbol, account=self.account, client_order_id=cloid
                ),
            )
        symbol = rng.choice(self.symbols)
        cloid = f"{self.account}-{self.n}"
        is_buy = rng.random() < 0.5
        if r < 0.4:  # marketable: crosses the touch
            price = MID + 50 if is_buy else MID - 50
            tif = 2  # IOC
        else:
            offset = 1 + int(rng.expovariate(1 / 20))
            price = MID - offset if is_buy else MID + offset
            tif = 1
            self.placed.append((symbol, cloid))
        order = orders_pb2.PlaceOrder(
            symbol=symbol,
            account=self.account,
            side=1 if is_buy else 2,  # type: ignore[arg-type]
            order_type=1,  # type: ignore[arg-type]
            time_in_force=tif,  # type: ignore[arg-type]
            price=price,
            quantity=rng.randint(1, 10),
            stp_mode=1,  # type: ignore[arg-type]
            client_order_id=cloid,
        )
        return orders_pb2.OrderCommand(correlation_id=self.n, place_order=order)


async def run_client(
    target: str,
    flow: ClientFlow,
    batch: int,
    messages: int,
    rate_per_s: float | None,
    window: int,
    deadline_s: float,
    result: LoadResult | None = None,
    *,
    prepared: Sequence[Prepared] | None = None,
    repeat: bool = False,
    metadata: Sequence[tuple[str, str]] | None = None,
) -> LoadResult:
    """One Trade stream: ``messages`` messages of ``batch`` commands (bounded in time too).

    With ``prepared``, those messages are sent (``messages`` is ignored; with ``repeat``,
    ``messages`` of them round-robin, for servers that do not care about duplicates) and the
    answers are counted once the stream ends; without, each message is built when it is due
    and counted when answered: pass ``result`` to watch it fill while the stream runs.
    ``metadata`` goes with the call (e.g. ``api.auth.bearer(token)``)."""
    result = LoadResult() if result is None else result
    sent: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    answers: list[tuple[bytes, gateway_pb2.TradeResponse]] = []
    inflight = asyncio.Semaphore(window)
    count = len(prepared) if prepared is not None and not repeat else messages
    started = result.started = time.perf_counter()

    async def requests() -> AsyncIterator[bytes]:
        for i in range(count):
            if time.perf_counter() - started > deadline_s:
                break
            due = started + i / rate_per_s if rate_per_s else time.perf_counter()
            if rate_per_s:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            else:
                await inflight.acquire()
            message = prepared[i % len(prepared)] if prepared else flow.prepared(batch)
            sent.put_nowait((due, message.placements))
            yield message.payload

    def answered(reply: gateway_pb2.TradeResponse) -> None:
        if not reply.results or reply.results[0].correlation_id == 0:
            return  # unsolicited maker reports
        due, placements = sent.get_nowait()
        now = time.perf_counter()
        result.latencies_ms.append((now - due) * 1e3)
        result.acks.append((now, len(placements)))
        if prepared is None:
            _count(result, placements, reply.results)
        else:
            answers.append((placements, reply))  # counted once the stream ends
        if not rate_per_s:
            inflight.release()

    await _stream(target, requests(), deadline_s + 30, answered, result, metadata)
    result.elapsed_s = time.perf_counter() - started
    for placements, reply in answers:
        _count(result, placements, reply.results)
    return result


async def _stream(
    target: str,
    requests: AsyncIterator[bytes],
    timeout: float,
    on_reply: Callable[[gateway_pb2.TradeResponse], None],
    result: LoadResult,
    metadata: Sequence[tuple[str, str]] | None = None,
) -> None:
    """One Trade call: requests go out as prepared bytes (no serializer), answers are
    parsed; a failed call is noted in ``result``."""
    async with grpc.aio.insecure_channel(target) as channel:
        trade: grpc.aio.StreamStreamMultiCallable[bytes, gateway_pb2.TradeResponse] = (
            channel.stream_stream(
                _TRADE_PATH, response_deserializer=gateway_pb2.TradeResponse.FromString
            )
        )
        try:
            async for reply in trade(requests, timeout=timeout, metadata=metadata):
                on_reply(reply)
        except grpc.aio.AioRpcError as exc:
            result.rpc_failures.append(f"{exc.code().name}: {exc.details()}")


def _count(result: LoadResult, placements: bytes, results: object) -> None:
    for is_place, res in zip(placements, results, strict=True):  # type: ignore[call-overload]
        result.orders += 1
        if res.WhichOneof("result") == "error":
            result.errors += 1
            result.error_reasons[types_pb2.RejectCode.Name(res.error.reason)] += 1
        elif is_place and res.report.order_id:
            result.acked_order_ids.append(res.report.order_id)
            result.fills += len(res.report.fills)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drive_streams(
    target: str,
    flows: list[ClientFlow],
    batch: int,
    window: int,
    duration_s: float,
    rate: float | None,
    max_rate: float,
    *,
    echo: bool = False,
) -> LoadResult:
    """One prepared Trade stream per flow, together: closed loop (``rate`` None, at most
    ``max_rate`` orders/s worth of prepared messages) or open loop at ``rate`` orders/s.

    ``echo``: the target only echoes (the raw two-hop ceiling), so a few prepared messages
    are sent round-robin for the whole duration: its rate is not capped by ``max_rate``."""
    per_client = (rate or max_rate) / len(flows) / batch
    count = max(1, int(per_client * duration_s))
    plans = [f.prepare(batch, min(count, ECHO_MESSAGES) if echo else count) for f in flows]
    if echo:
        count = 1 << 62  # the duration ends the run
    open_loop = per_client if rate else None
    results = await asyncio.gather(
        *(
            run_client(
                target, f, batch, count, open_loop, window, duration_s, prepared=plan,
                repeat=echo,
            )
            for f, plan in zip(flows, plans, strict=True)
        )
    )  # fmt: skip
    total = LoadResult()
    for r in results:
        total.merge(r)
    total.elapsed_s = max(r.elapsed_s for r in results)
    total.exhausted = not rate and any(r.orders >= count * batch for r in results)
    return total
