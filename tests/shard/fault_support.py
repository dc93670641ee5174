"""Support for the shard's fault tests: seeded client flows, clients that record exactly what
they were told, and checks of those answers against the durable record in Postgres.

A client's log separates three fates of a command: acknowledged (a report came back),
refused (a per-command error came back) and unanswered (the call failed: outcome unknown).
Every check reads Postgres; nothing is judged from the shard's logs.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import grpc
import psycopg

from matching.v1 import gateway_pb2, gateway_pb2_grpc, orders_pb2
from shard.engine import Level, Side, SymbolSpec
from tests.checkers import journal_command
from tests.shard import support
from tests.shard.engine.flows import DEFAULT_SYMBOLS, MID_TICKS
from tests.shard.engine.reference import ReferenceEngine
from tools.services.shard_process import ShardProcess

Command = orders_pb2.OrderCommand
Result = orders_pb2.CommandResult
Stub: TypeAlias = "gateway_pb2_grpc.OrderGatewayServiceAsyncStub"  # exists in the stubs only

BTC, ETH = "BTC-USDT", "ETH-USDT"
SPECS: dict[str, SymbolSpec] = {spec.symbol: spec for spec in DEFAULT_SYMBOLS}
RPC_TIMEOUT = 15.0  # one SubmitBatch / GetOrderBook call
KIND_OF = {"place_order": 1, "cancel_order": 2, "amend_order": 3, "mass_cancel": 4}
REASON_NOT_OWNER = 100
REASON_OUTCOME_UNKNOWN = 109

# Weights of the command kinds a flow draws from.
PLACEMENTS_ONLY = {"limit": 70, "ioc": 30}
MIXED = {"limit": 45, "ioc": 12, "market": 5, "cancel": 20, "amend": 18}


class OrderFlow:
    """One client's seeded commands under its own account, with unique client order ids.

    Limits rest near a mid shared by every client (so clients trade with each other), IOC
    limits and market orders take, cancels and amends target the client's own earlier
    orders, by client order id or by an order id learned from an acknowledgement.
    """

    def __init__(
        self,
        client: int,
        seed: int,
        weights: dict[str, int],
        symbols: Sequence[str] = (BTC, ETH),
    ) -> None:
        self.rng = random.Random(seed * 1_000 + client)
        self.account = f"acct-{client}"
        self.weights = weights
        self.symbols = list(symbols)
        self.placed: list[tuple[str, str]] = []  # (symbol, client order id) of GTC limits
        self.order_ids: dict[str, int] = {}  # client order id -> acknowledged order id
        self.n = 0

    def batch(self, size: int) -> list[Command]:
        return [self.next() for _ in range(size)]

    def next(self) -> Command:
        self.n += 1
        kinds, weights = zip(*self.weights.items(), strict=True)
        kind = self.rng.choices(kinds, weights)[0]
        if kind in ("cancel", "amend") and self.placed:
            return self._cancel() if kind == "cancel" else self._amend()
        return self._place("limit" if kind in ("cancel", "amend") else kind)

    def learn(self, command: Command, result: Result) -> None:
        if command.WhichOneof("command") == "place_order" and result.report.order_id:
            self.order_ids[command.place_order.client_order_id] = result.report.order_id

    def _place(self, kind: str) -> Command:
        rng = self.rng
        symbol = rng.choice(self.symbols)
        spec = SPECS[symbol]
        side = rng.choice((Side.BUY, Side.SELL))
        sign = -1 if side == Side.BUY else 1  # away from the mid on the order's own side
        ticks = rng.randint(-2, 8) if kind == "limit" else -rng.randint(1, 6)
        price = (
            0 if kind == "market" else MID_TICKS * spec.tick_size + sign * ticks * spec.tick_size
        )
        cloid = f"{self.account}-{self.n}"
        order = orders_pb2.PlaceOrder(
            symbol=symbol, account=self.account, side=int(side),  # type: ignore[arg-type]
            quantity=self._quantity(spec), price=price,
            order_type=2 if kind == "market" else 1,  # type: ignore[arg-type]
            time_in_force=1 if kind == "limit" else 2,  # type: ignore[arg-type]
            stp_mode=rng.choices((1, 2, 3, 4), (70, 10, 10, 10))[0],  # type: ignore[arg-type]
            client_order_id=cloid,
        )  # fmt: skip
        if kind == "limit":
            self.placed.append((symbol, cloid))
        return Command(correlation_id=self.n, place_order=order)

    def _quantity(self, spec: SymbolSpec) -> int:
        lots = max(spec.min_quantity // spec.lot_size, 1)
        return spec.lot_size * self.rng.randint(lots, lots + 10)

    def _target(self) -> tuple[str, str, int]:
        """(symbol, client order id, order id) of one of this client's earlier limits."""
        symbol, cloid = self.rng.choice(self.placed[-50:])
        order_id = self.order_ids.get(cloid, 0)
        if order_id and self.rng.random() < 0.5:
            return symbol, "", order_id
        return symbol, cloid, 0

    def _cancel(self) -> Command:
        symbol, cloid, order_id = self._target()
        cancel = orders_pb2.CancelOrder(
            symbol=symbol, account=self.account, order_id=order_id, client_order_id=cloid
        )
        return Command(correlation_id=self.n, cancel_order=cancel)

    def _amend(self) -> Command:
        symbol, cloid, order_id = self._target()
        spec = SPECS[symbol]
        amend = orders_pb2.AmendOrder(
            symbol=symbol, account=self.account, order_id=order_id, client_order_id=cloid
        )
        if self.rng.random() < 0.5:
            amend.new_quantity = self._quantity(spec)
        else:
            ticks = self.rng.randint(-6, 6)
            amend.new_price = MID_TICKS * spec.tick_size + ticks * spec.tick_size
        return Command(correlation_id=self.n, amend_order=amend)


@dataclass
class ClientLog:
    acked: list[tuple[Command, Result]] = field(default_factory=list)
    refused: list[tuple[Command, orders_pb2.CommandError]] = field(default_factory=list)
    unanswered: list[Command] = field(default_factory=list)
    rpc_errors: list[grpc.StatusCode] = field(default_factory=list)
    ack_times: list[float] = field(default_factory=list)  # monotonic, one per acked command

    def record(self, commands: Sequence[Command], results: Sequence[Result]) -> list[Command]:
        """Record one answer; returns the commands refused with a retryable error."""
        assert len(results) == len(commands), "one result per command"
        retry: list[Command] = []
        now = time.monotonic()
        for command, result in zip(commands, results, strict=True):
            assert result.correlation_id == command.correlation_id
            if result.WhichOneof("result") == "error":
                self.refused.append((command, result.error))
                if result.error.retryable:
                    retry.append(command)
            else:
                self.acked.append((command, result))
                self.ack_times.append(now)
        return retry

    def acked_order_ids(self) -> list[int]:
        return [
            r.report.order_id
            for c, r in self.acked
            if c.WhichOneof("command") == "place_order" and r.report.order_id
        ]


def merged(logs: Sequence[ClientLog]) -> ClientLog:
    out = ClientLog()
    for log in logs:
        out.acked += log.acked
        out.refused += log.refused
        out.unanswered += log.unanswered
        out.rpc_errors += log.rpc_errors
        out.ack_times += log.ack_times
    return out


async def submit(stub: Stub, commands: Sequence[Command]) -> list[Result]:
    return await support.submit(stub, commands, RPC_TIMEOUT)


async def batch_client(
    stub: Stub, flow: OrderFlow, log: ClientLog, *, size: int, batches: int, seconds: float
) -> None:
    """SubmitBatch calls one after another until the shard stops answering (bounded)."""
    deadline = time.monotonic() + seconds
    for _ in range(batches):
        if time.monotonic() > deadline:
            return
        commands = flow.batch(size)
        try:
            results = await submit(stub, commands)
        except grpc.aio.AioRpcError as exc:
            log.unanswered += commands
            log.rpc_errors.append(exc.code())
            return
        log.record(commands, results)
        for command, result in zip(commands, results, strict=True):
            flow.learn(command, result)


async def trade_client(
    stub: Stub,
    flow: OrderFlow,
    log: ClientLog,
    *,
    size: int,
    messages: int,
    window: int,
    seconds: float,
) -> None:
    """One Trade stream, ``window`` messages in flight, until the shard goes away (bounded)."""
    deadline = time.monotonic() + seconds
    sent: deque[list[Command]] = deque()
    slots = asyncio.Semaphore(window)
    finished = False

    async def requests() -> AsyncIterator[gateway_pb2.TradeRequest]:
        for _ in range(messages):
            await slots.acquire()
            if finished or time.monotonic() > deadline:
                return
            commands = flow.batch(size)
            sent.append(commands)
            yield gateway_pb2.TradeRequest(commands=commands)

    call = stub.Trade(requests(), timeout=seconds + RPC_TIMEOUT)
    try:
        async for reply in call:
            commands = sent.popleft()
            log.record(commands, reply.results)
            for command, result in zip(commands, reply.results, strict=True):
                flow.learn(command, result)
            slots.release()
    except grpc.aio.AioRpcError as exc:
        log.rpc_errors.append(exc.code())
    finally:
        finished = True
        slots.release()  # let the request generator see ``finished`` and end
        call.cancel()
    log.unanswered += [c for commands in sent for c in commands]


async def persistent_client(
    stub: Stub,
    flow: OrderFlow,
    log: ClientLog,
    stop: asyncio.Event,
    *,
    size: int,
    seconds: float,
    backoff: float = 0.05,
) -> None:
    """Like a real client: retries retryable errors and failed calls with the same commands
    (same client order ids) until each is answered for good; new batches until ``stop``."""
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        pending = flow.batch(size)
        while pending and time.monotonic() < deadline:
            try:
                results = await submit(stub, pending)
            except grpc.aio.AioRpcError as exc:
                log.rpc_errors.append(exc.code())
                await asyncio.sleep(backoff)
                continue
            for command, result in zip(pending, results, strict=True):
                flow.learn(command, result)
            pending = log.record(pending, results)
            if pending:
                await asyncio.sleep(backoff)
        log.unanswered += pending


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll a condition with a deadline; returns the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


# --- the durable record ---------------------------------------------------------------


def journal_results(dsn: str) -> dict[tuple[str, int], tuple[int, str, str, int, tuple[int, ...]]]:
    """(symbol, seq) -> (kind, account, client id, order id, (status, reject, cum, leaves))."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT symbol, seq, kind, account, client_order_id, order_id, status, reject_code,"
            " cum_qty, leaves_qty FROM journal"
        ).fetchall()
    return {(r[0], r[1]): (r[2], r[3], r[4], r[5], tuple(r[6:10])) for r in rows}


def check_acks_match_journal(dsn: str, log: ClientLog) -> int:
    """Every acknowledged report is the durable result at its (symbol, seq).

    A report released for a batch that never committed would fail this: its seq is either
    missing or was reused after recovery by another command. Returns the reports checked.
    """
    journal = journal_results(dsn)
    checked = 0
    for command, result in log.acked:
        kind = command.WhichOneof("command")
        assert kind is not None
        reports = list(result.mass_cancel.reports) if kind == "mass_cancel" else [result.report]
        for report in reports:
            key = (report.symbol, report.seq)
            assert key in journal, f"acknowledged {kind} {key} is not in the journal"
            jkind, account, cloid, order_id, outcome = journal[key]
            got = (report.status, report.reject_code, report.cum_qty, report.leaves_qty)
            assert (jkind, account, outcome) == (KIND_OF[kind], report.account, got), (
                f"acknowledged {kind} {key} differs from the durable journal row"
            )
            if kind == "place_order":
                assert (cloid, order_id) == (report.client_order_id, report.order_id), key
                assert cloid == command.place_order.client_order_id, key
            checked += 1
    return checked


def committed_batches(dsn: str) -> int:
    """How many batch transactions committed journal rows (one transaction per batch)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(DISTINCT xmin::text) FROM journal").fetchone()
    assert row is not None
    return int(row[0])


def durable_placements(dsn: str) -> dict[tuple[str, str], int]:
    """(account, client order id) -> order id of every durable order with a client id."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT account, client_order_id, order_id FROM orders"
            " WHERE client_order_id IS NOT NULL"
        ).fetchall()
    return {(r[0], r[1]): r[2] for r in rows}


def executed_placements(dsn: str) -> dict[tuple[str, str], int]:
    """(account, client order id) -> how many journal rows placed an order with it."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT account, client_order_id, count(*) FROM journal"
            " WHERE kind = 1 AND client_order_id <> '' AND order_id <> 0 GROUP BY 1, 2"
        ).fetchall()
    return {(r[0], r[1]): r[2] for r in rows}


def key_of(command: Command) -> tuple[str, str]:
    return command.place_order.account, command.place_order.client_order_id


@dataclass(frozen=True)
class ReplayedBook:
    seq: int
    bids: list[tuple[int, int, int]]  # (price, quantity, order count), best first
    asks: list[tuple[int, int, int]]


def replayed_books(dsn: str, depth: int) -> dict[str, ReplayedBook]:
    """Each symbol's L2 book as the reference matcher rebuilds it from the durable journal."""
    engine = ReferenceEngine()
    with psycopg.connect(dsn) as conn:
        for row in conn.execute(
            "SELECT symbol, symbol_id, tick_size, lot_size, min_quantity, max_quantity FROM symbols"
        ):
            engine.add_symbol(SymbolSpec(*row))
        journal = conn.execute(
            "SELECT symbol, seq, kind, account, client_order_id, order_id, side, order_type,"
            " time_in_force, post_only, stp, price, quantity, symbol_status FROM journal"
            " ORDER BY symbol, seq"
        ).fetchall()
    for row in journal:
        engine.execute(journal_command(row))
    books = {}
    for symbol in (BTC, ETH):
        book = engine.book(symbol)
        books[symbol] = ReplayedBook(
            book.last_seq,
            _levels(book.depth(Side.BUY, depth)),
            _levels(book.depth(Side.SELL, depth)),
        )
    return books


def _levels(levels: Sequence[Level]) -> list[tuple[int, int, int]]:
    return [(lv.price, lv.quantity, lv.order_count) for lv in levels]


async def served_book(stub: Stub, symbol: str, depth: int) -> ReplayedBook:
    reply = await stub.GetOrderBook(
        gateway_pb2.GetOrderBookRequest(symbol=symbol, depth=depth), timeout=RPC_TIMEOUT
    )
    return ReplayedBook(
        reply.seq,
        [(lv.price, lv.quantity, lv.order_count) for lv in reply.book.bids],
        [(lv.price, lv.quantity, lv.order_count) for lv in reply.book.asks],
    )


async def resubmit(
    stub: Stub, commands: Sequence[Command], log: ClientLog, *, size: int = 50, seconds: float = 20
) -> None:
    """Send ``commands`` again, as they were (same client order ids), retrying retryable
    refusals until each has a final answer (bounded); an RPC failure fails the test."""
    deadline = time.monotonic() + seconds
    for start in range(0, len(commands), size):
        pending = list(commands[start : start + size])
        while pending and time.monotonic() < deadline:
            pending = log.record(pending, await submit(stub, pending))
            if pending:
                await asyncio.sleep(0.05)
        log.unanswered += pending


class Shards:
    """The shard processes of one test, logging under its tmp dir; all killed at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[ShardProcess] = []

    async def start(
        self,
        dsn: str,
        symbols: tuple[str, ...] = (BTC, ETH),
        shard_id: str = "shard-1",
        failpoints: str = "",
    ) -> ShardProcess:
        shard = ShardProcess(dsn, self.log_dir, symbols, shard_id, failpoints)
        self.started.append(shard)
        await asyncio.to_thread(shard.start)
        return shard

    def kill_all(self) -> None:
        for shard in self.started:
            shard.kill()  # a no-op for one that has exited already
