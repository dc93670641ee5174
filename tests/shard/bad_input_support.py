"""Cases and helpers of tests/shard/test_bad_input.py.

The bad inputs (by contract tier: malformed, engine reject, unparseable), command builders,
snapshots of the durable record and of the committed book to prove that nothing else
changed, unary calls by command kind, and the load of the slow-reader tests."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import psycopg

from api.status import decode_bad_request, decode_command_error
from matching.v1 import gateway_pb2, gateway_pb2_grpc, orders_pb2, types_pb2
from persistence.symbols import create_symbol
from shard.server import ShardNode
from shard.streams import StreamSession
from tests.shard.support import place, prepare_db, submit

T = types_pb2
RC = T.RejectCode
BUY, SELL = T.SIDE_BUY, T.SIDE_SELL
BTC, ETH = "BTC-USDT", "ETH-USDT"  # ETH: tick 5, lot 10, min 20, max 5000
OTHER = "SOL-USDT"  # reference data in Postgres, not served by the shard under test
UNKNOWN = "NOPE-USDT"  # no reference data anywhere
TIMEOUT = 5.0  # every RPC of these tests
GOOD = ("good-1", "good-2")  # accounts of the good commands around a bad one in a batch
TRACEBACK_MARKERS = ("Traceback", 'File "')

Stub = gateway_pb2_grpc.OrderGatewayServiceStub
Command = orders_pb2.OrderCommand


async def prepare(dsn: str) -> None:
    """BTC and ETH as in tests/shard/engine/flows.py, plus OTHER (for NOT_OWNER)."""
    await prepare_db(dsn)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await create_symbol(conn, OTHER)


# --- commands ----------------------------------------------------------------------------


def cmd(correlation_id: int = 0, **kind: Any) -> Command:
    """``cmd(place_order=...)`` and the like."""
    return orders_pb2.OrderCommand(correlation_id=correlation_id, **kind)


def order(**fields: Any) -> Command:
    """A PlaceOrder: a valid BTC limit buy far below every ask unless overridden."""
    base = {"symbol": BTC, "account": "bad", "side": BUY, "order_type": T.ORDER_TYPE_LIMIT,
            "time_in_force": T.TIME_IN_FORCE_GTC, "stp_mode": T.STP_MODE_NONE, "price": 10,
            "quantity": 1}  # fmt: skip
    return cmd(place_order=orders_pb2.PlaceOrder(**{**base, **fields}))


def cancel(**fields: Any) -> Command:
    return cmd(cancel_order=orders_pb2.CancelOrder(**{"symbol": BTC, "account": "bad", **fields}))


def amend(**fields: Any) -> Command:
    """An amend of the resting ETH sell "rest-eth" of account "maker" unless overridden."""
    base = {"symbol": ETH, "account": "maker", "client_order_id": "rest-eth"}
    return cmd(amend_order=orders_pb2.AmendOrder(**{**base, **fields}))


def mass(**fields: Any) -> Command:
    return cmd(mass_cancel=orders_pb2.MassCancel(**{"symbol": BTC, **fields}))


def ioc_probe(account: str, symbol: str = BTC) -> orders_pb2.PlaceOrder:
    """A valid order that never trades (IOC buy far below any ask): EXPIRED, book intact."""
    price, qty = (5, 20) if symbol == ETH else (1, 1)
    return place(symbol, account, BUY, qty, price, tif=T.TIME_IN_FORCE_IOC)


def fat_commands(n: int) -> list[Command]:
    """``n`` IOC probes of ~150 bytes each (long account and client order id)."""
    fat = ioc_probe("x" * 60)
    fat.client_order_id = "c" * 60
    return [cmd(i + 1, place_order=fat) for i in range(n)]


# --- the cases ---------------------------------------------------------------------------

LONG = "a" * 65  # over the 64-byte account limit
WIDE = "é" * 33  # 33 characters but 66 UTF-8 bytes: over it too
# Malformed (api/validation default tier): never executed. (id, command, field path)
MALFORMED: list[tuple[str, Command, str]] = [
    ("place-empty-symbol", order(symbol=""), "place_order.symbol"),
    ("place-lowercase-symbol", order(symbol="btc-usdt"), "place_order.symbol"),
    ("place-symbol-33-chars", order(symbol="B" * 33), "place_order.symbol"),
    ("place-symbol-hash-tag", order(symbol="{BTC-USDT}"), "place_order.symbol"),
    ("place-symbol-space", order(symbol="BTC USDT"), "place_order.symbol"),
    ("place-symbol-non-ascii", order(symbol="BTC-ÜSDT"), "place_order.symbol"),
    ("place-symbol-nul", order(symbol="BTC\x00"), "place_order.symbol"),
    ("place-account-65-bytes", order(account=LONG), "place_order.account"),
    ("place-account-66-utf8-bytes", order(account=WIDE), "place_order.account"),
    ("cancel-bad-symbol", cancel(symbol="btc", order_id=1), "cancel_order.symbol"),
    ("cancel-account-too-long", cancel(account=LONG, order_id=1), "cancel_order.account"),
    ("amend-empty-symbol", amend(symbol="", new_quantity=40), "amend_order.symbol"),
    ("amend-account-too-long", amend(account=WIDE, new_quantity=40), "amend_order.account"),
    ("mass-cancel-no-account", mass(), "mass_cancel.account"),
    ("mass-cancel-unknown-side", mass(account="maker", side=9), "mass_cancel.side"),
    ("mass-cancel-bad-symbol", mass(symbol="BTC/USDT", account="maker"), "mass_cancel.symbol"),
    # Past the 64 characters the engine rejects, the wire's bound (limits.py) refuses it.
    (
        "place-client-order-id-huge",
        order(client_order_id="c" * 2_000),
        "place_order.client_order_id",
    ),
    (
        "cancel-client-order-id-huge",
        cancel(client_order_id="c" * 2_000),
        "cancel_order.client_order_id",
    ),
]
NEGATIVE_DEADLINE = cmd(deadline_unix_nanos=-1, place_order=ioc_probe("bad"))
BATCH_ONLY: list[tuple[str, Command, str]] = [  # not expressible in a unary request
    ("no-command-kind", orders_pb2.OrderCommand(), "command"),
    ("negative-deadline", NEGATIVE_DEADLINE, "deadline_unix_nanos"),
]

# Engine rejects (0002: UNSPECIFIED enums, non-positive quantities... reach the engine and
# come back as a REJECTED report). (id, command, RejectCode name without its prefix)
MARKET_IOC = {"order_type": T.ORDER_TYPE_MARKET, "time_in_force": T.TIME_IN_FORCE_IOC}
ENGINE_REJECTS: list[tuple[str, Command, str]] = [
    ("side-unspecified", order(side=0), "INVALID_SIDE"),
    ("side-unknown", order(side=3), "INVALID_SIDE"),
    ("order-type-unspecified", order(order_type=0), "INVALID_ORDER_TYPE"),
    ("tif-unspecified", order(time_in_force=0), "INVALID_TIME_IN_FORCE"),
    ("stp-unspecified", order(stp_mode=0), "INVALID_STP_MODE"),
    ("quantity-zero", order(quantity=0), "INVALID_QUANTITY"),
    ("quantity-negative", order(quantity=-5), "INVALID_QUANTITY"),
    ("price-negative", order(price=-1), "INVALID_PRICE"),
    ("price-zero-limit", order(price=0), "INVALID_PRICE"),
    ("market-with-price", order(**MARKET_IOC), "INVALID_PRICE"),
    ("notional-overflow", order(price=1 << 62, quantity=4), "NOTIONAL_OVERFLOW"),
    ("account-empty", order(account=""), "INVALID_ACCOUNT"),
    ("client-order-id-65", order(client_order_id="c" * 65), "CLIENT_ORDER_ID_TOO_LONG"),
    ("post-only-ioc", order(post_only=True, time_in_force=2), "POST_ONLY_NOT_ALLOWED"),
    ("eth-price-off-tick", order(symbol=ETH, price=102, quantity=20), "PRICE_NOT_TICK_MULTIPLE"),
    ("eth-qty-off-lot", order(symbol=ETH, price=100, quantity=25), "QUANTITY_NOT_LOT_MULTIPLE"),
    ("eth-qty-below-min", order(symbol=ETH, price=100, quantity=10), "QUANTITY_BELOW_MIN"),
    ("eth-qty-above-max", order(symbol=ETH, price=100, quantity=5010), "QUANTITY_ABOVE_MAX"),
    ("cancel-no-reference", cancel(), "MISSING_ORDER_REFERENCE"),
    ("cancel-unknown-order", cancel(order_id=123_456), "UNKNOWN_ORDER"),
    ("cancel-negative-order-id", cancel(order_id=-1), "UNKNOWN_ORDER"),
    ("cancel-another-accounts-order", cancel(client_order_id="rest-btc"), "UNKNOWN_ORDER"),
    ("amend-negative-price", amend(new_price=-5), "INVALID_PRICE"),
    ("amend-price-off-tick", amend(new_price=1003), "PRICE_NOT_TICK_MULTIPLE"),
    ("amend-quantity-off-lot", amend(new_quantity=25), "QUANTITY_NOT_LOT_MULTIPLE"),
]


def reject(name: str) -> int:
    """A RejectCode by its name without the REJECT_CODE_ prefix."""
    return RC.Value(f"REJECT_CODE_{name}")


# Enum numbers the contract sends to the engine, beyond what a smallint column holds.
WIDE_ENUMS = [
    ("side", "INVALID_SIDE"),
    ("order_type", "INVALID_ORDER_TYPE"),
    ("time_in_force", "INVALID_TIME_IN_FORCE"),
    ("stp_mode", "INVALID_STP_MODE"),
]
# Strings that pass validation but that Postgres text cannot hold.
NUL_STRINGS = [
    order(account="a\x00b"),
    cancel(client_order_id="c\x00"),
    mass(account="a\x00"),
]
# Bytes no protobuf message parses from.
JUNK = {
    "all-ones": b"\xff\xff\xff\xff",
    "truncated-length": b"\x0a\xff\xff\xff\xff\x0f",
    "wire-type-7": b"\x0f",
    "unmatched-end-group": b"\x0c",
    "truncated-tag": b"\x0a",
    "noise": bytes(range(255, 0, -3)),
}


def ids(cases: list[tuple[str, Any, Any]]) -> list[str]:
    return [c[0] for c in cases]


def symbol_of(command: Command) -> str:
    kind = command.WhichOneof("command")
    assert kind is not None
    return str(getattr(command, kind).symbol)


def sandwich(bad: Command) -> list[Command]:
    """The bad command between two good ones; correlation ids 1, 2, 3."""
    middle = orders_pb2.OrderCommand()
    middle.CopyFrom(bad)
    middle.correlation_id = 2
    return [cmd(1, place_order=ioc_probe(GOOD[0])), middle, cmd(3, place_order=ioc_probe(GOOD[1]))]


def assert_good_neighbours(results: list[Any]) -> None:
    assert [r.correlation_id for r in results] == [1, 2, 3]
    for result in (results[0], results[2]):
        assert result.WhichOneof("result") == "report", result
        assert result.report.status == T.ORDER_STATUS_EXPIRED
        assert result.report.reject_code == RC.REJECT_CODE_UNSPECIFIED


def assert_refused_alone(results: list[Any]) -> None:
    """The bad command is refused (MALFORMED, or a REJECTED report); its neighbours run."""
    assert_good_neighbours(results)
    bad = results[1]
    if bad.WhichOneof("result") == "error":
        assert bad.error.reason == RC.REJECT_CODE_MALFORMED_COMMAND, bad
    else:
        assert bad.report.status == T.ORDER_STATUS_REJECTED, bad


# --- the durable record and the committed book -------------------------------------------


@dataclass(frozen=True)
class Durable:
    journal: frozenset[tuple[Any, ...]]  # (symbol, seq, kind, account, status, reject_code)
    orders: dict[int, tuple[Any, ...]]  # order_id -> the whole row
    fills: int


@dataclass(frozen=True)
class Change:
    journal: list[tuple[Any, ...]]  # new journal rows, by (symbol, seq)
    new_orders: set[int]
    changed_orders: set[int]  # rows that existed before and differ now
    fills: int


NO_CHANGE = Change([], set(), set(), 0)


async def durable(dsn: str) -> Durable:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT symbol, seq, kind, account, status, reject_code FROM journal"
        )
        journal = frozenset(tuple(r) for r in await cur.fetchall())
        cur = await conn.execute("SELECT * FROM orders")
        orders = {r[0]: tuple(r) for r in await cur.fetchall()}
        cur = await conn.execute("SELECT count(*) FROM fills")
        row = await cur.fetchone()
    assert row is not None
    return Durable(journal, orders, row[0])


def change(before: Durable, after: Durable) -> Change:
    assert before.journal <= after.journal, "journal rows disappeared"
    assert before.orders.keys() <= after.orders.keys(), "orders disappeared"
    return Change(
        sorted(after.journal - before.journal),
        set(after.orders) - set(before.orders),
        {k for k, v in before.orders.items() if after.orders[k] != v},
        after.fills - before.fills,
    )


Book = tuple[int, list[tuple[int, int, int]], list[tuple[int, int, int]]]  # seq, bids, asks


async def book(stub: Stub, symbol: str) -> Book:
    request = gateway_pb2.GetOrderBookRequest(symbol=symbol, depth=50)
    reply = await stub.GetOrderBook(request, timeout=TIMEOUT)
    bids = [(lv.price, lv.quantity, lv.order_count) for lv in reply.book.bids]
    asks = [(lv.price, lv.quantity, lv.order_count) for lv in reply.book.asks]
    return reply.seq, bids, asks


async def books(stub: Stub) -> dict[str, Book]:
    return {s: await book(stub, s) for s in (BTC, ETH)}


def levels(by_symbol: dict[str, Book]) -> dict[str, Any]:
    """The price levels only (a rejected command still moves the book's seq)."""
    return {s: b[1:] for s, b in by_symbol.items()}


# --- calls -------------------------------------------------------------------------------


async def assert_serves(stub: Stub, account: str = "after") -> None:
    """The shard still executes a good order, promptly."""
    request = gateway_pb2.SubmitOrderRequest(order=ioc_probe(account))
    report = (await stub.SubmitOrder(request, timeout=TIMEOUT)).report
    assert report.status == T.ORDER_STATUS_EXPIRED and report.seq > 0, report
    assert report.reject_code == RC.REJECT_CODE_UNSPECIFIED


def assert_clean_details(err: grpc.aio.AioRpcError) -> None:
    details = err.details() or ""
    assert not any(m in details for m in TRACEBACK_MARKERS), details
    assert "\n" not in details.strip(), details


def violations(err: grpc.aio.AioRpcError) -> list[str]:
    return [v.field for v in decode_bad_request(err.trailing_metadata())]  # type: ignore[arg-type]


def command_error(err: grpc.aio.AioRpcError) -> orders_pb2.CommandError:
    found = decode_command_error(err.trailing_metadata())  # type: ignore[arg-type]
    assert found is not None, "no matching-command-error-bin trailer"
    return found


async def unary(stub: Stub, command: Command) -> Any:
    """The unary RPC that carries ``command``'s kind; its report (or mass cancel result)."""
    kind = command.WhichOneof("command")
    if kind == "place_order":
        request = gateway_pb2.SubmitOrderRequest(order=command.place_order)
        return (await stub.SubmitOrder(request, timeout=TIMEOUT)).report
    if kind == "cancel_order":
        cancel_request = gateway_pb2.CancelOrderRequest(cancel=command.cancel_order)
        return (await stub.CancelOrder(cancel_request, timeout=TIMEOUT)).report
    if kind == "amend_order":
        amend_request = gateway_pb2.AmendOrderRequest(amend=command.amend_order)
        return (await stub.AmendOrder(amend_request, timeout=TIMEOUT)).report
    assert kind == "mass_cancel", kind
    mass_request = gateway_pb2.MassCancelRequest(mass_cancel=command.mass_cancel)
    return (await stub.MassCancel(mass_request, timeout=TIMEOUT)).result


def trade(stub: Stub) -> Any:
    """A Trade stream call (the generated stubs type it as a plain iterator)."""
    open_call: Any = stub.Trade
    return open_call(timeout=TIMEOUT)


async def batch(stub: Stub, commands: list[Command], timeout: float = TIMEOUT) -> list[Any]:
    return await submit(stub, commands, timeout)


# --- slow readers ------------------------------------------------------------------------


def session_of(node: ShardNode, account: str) -> StreamSession | None:
    """The stream session subscribed to ``account``, if any (node internals)."""
    entries = node.subscribers._by_account.get(account)
    return next(iter(entries))[0] if entries else None


@dataclass
class QueueWatch:
    """Samples a session's output queue (the shard's memory for that stream)."""

    session: StreamSession
    max_size: int = 0

    async def run(self) -> None:
        for _ in range(100_000):  # bounded; the caller cancels it
            self.max_size = max(self.max_size, len(self.session._out))
            await asyncio.sleep(0.002)


@dataclass
class Latencies:
    """Another client's SubmitOrder calls: every one must succeed, promptly."""

    stub: Stub
    seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def run(self, interval: float = 0.02) -> None:
        for i in range(10_000):  # bounded; the caller cancels it
            began = time.monotonic()
            request = gateway_pb2.SubmitOrderRequest(order=ioc_probe(f"other-{i}", ETH))
            try:
                await self.stub.SubmitOrder(request, timeout=TIMEOUT)
            except grpc.aio.AioRpcError as err:
                self.errors.append(f"{err.code()}: {err.details()}")
            self.seconds.append(time.monotonic() - began)
            await asyncio.sleep(interval)

    def summary(self) -> str:
        s = self.seconds or [0.0]
        return f"{len(s)} calls, median {statistics.median(s):.3f}s, max {max(s):.3f}s"


async def maker_round(stub: Stub, round_no: int, makers: int, account: str = "mm") -> int:
    """Rest ``makers`` one-lot sells of ``account``, then sweep them with one IOC buy of
    another account: ``makers`` unsolicited maker-fill reports (~200 bytes each, long
    client order ids) for the streams subscribed to ``account``. Returns the fill count."""
    sells = [
        cmd(place_order=place(BTC, account, SELL, 1, 100, cloid=f"r{round_no}-{i}".ljust(64, "x")))
        for i in range(makers)
    ]
    placed = await batch(stub, sells)
    assert all(r.report.status == T.ORDER_STATUS_NEW for r in placed), placed[:1]
    taker = place(BTC, "taker", BUY, makers, 100, tif=T.TIME_IN_FORCE_IOC)
    reply = await stub.SubmitOrder(gateway_pb2.SubmitOrderRequest(order=taker), timeout=TIMEOUT)
    return len(reply.report.fills)


async def wait_until(predicate: Any, timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` passes; whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())


async def final_status(call: Any, max_reads: int = 200_000, timeout: float = 10.0) -> Any:
    """Drain a stream call's buffered responses (bounded) and return its status code."""
    async with asyncio.timeout(timeout):
        for _ in range(max_reads):
            try:
                message = await call.read()
            except grpc.aio.AioRpcError as err:
                return err.code()
            if message is grpc.aio.EOF:
                break
        return await call.code()


async def bounded_status(call: Any) -> Any:
    """``final_status`` within TIMEOUT seconds, or None if the call never ended."""
    try:
        return await final_status(call, timeout=TIMEOUT)
    except TimeoutError:
        return None
