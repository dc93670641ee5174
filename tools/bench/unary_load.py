"""Unary load: many concurrent callers, one ``SubmitOrder`` per call (internal services' way).

``callers`` tasks share one channel and each keeps one call in flight, so ``callers`` calls
are in flight at once (closed loop; latency is per call, send to answer). Each caller trades
its own account: ~90 % passive limits near the touch, ~10 % marketable IOC. Every accepted
placement is recorded for reconciliation. Bounded in time (``duration_s``) and in count
(``max_calls`` per caller); each call has its own deadline.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TypeAlias

import grpc

from matching.v1 import gateway_pb2, gateway_pb2_grpc, orders_pb2, types_pb2

from .load import MID, LoadResult

log = logging.getLogger(__name__)

# grpc.aio's stub type (it exists in the generated .pyi only): its calls are awaitable.
Stub: TypeAlias = "gateway_pb2_grpc.OrderGatewayServiceAsyncStub"

CALL_TIMEOUT = 10.0  # one SubmitOrder
MAX_CALLS_PER_CALLER = 1_000_000


class UnaryFlow:
    """Placements for one caller's account; client order ids unique per account."""

    def __init__(self, caller: int, symbols: list[str], seed: int, run: str) -> None:
        self.rng = random.Random(seed * 1_000 + caller)
        self.account = f"un-{run}-{caller}"
        self.symbols = symbols
        self.n = 0

    def request(self) -> gateway_pb2.SubmitOrderRequest:
        rng = self.rng
        self.n += 1
        is_buy = rng.random() < 0.5
        if rng.random() < 0.1:  # marketable: crosses the touch, never rests
            price, tif = (MID + 50 if is_buy else MID - 50), types_pb2.TIME_IN_FORCE_IOC
        else:
            offset = 1 + int(rng.expovariate(1 / 20))
            price, tif = (MID - offset if is_buy else MID + offset), types_pb2.TIME_IN_FORCE_GTC
        return gateway_pb2.SubmitOrderRequest(
            order=orders_pb2.PlaceOrder(
                symbol=rng.choice(self.symbols),
                account=self.account,
                side=types_pb2.SIDE_BUY if is_buy else types_pb2.SIDE_SELL,
                order_type=types_pb2.ORDER_TYPE_LIMIT,
                time_in_force=tif,
                price=price,
                quantity=rng.randint(1, 10),
                stp_mode=types_pb2.STP_MODE_NONE,
                client_order_id=f"{self.account}-{self.n}",
            )
        )


async def run_unary(
    target: str,
    symbols: list[str],
    callers: int,
    duration_s: float,
    seed: int,
    run: str,
    max_calls: int = MAX_CALLS_PER_CALLER,
) -> LoadResult:
    """``callers`` concurrent SubmitOrder loops for ``duration_s`` (and ``max_calls`` each)."""
    started = time.perf_counter()
    stop_at = started + duration_s
    async with grpc.aio.insecure_channel(target) as channel:
        stub: Stub = gateway_pb2_grpc.OrderGatewayServiceStub(channel)
        results = await asyncio.gather(
            *(
                _caller(stub, UnaryFlow(c, symbols, seed, run), stop_at, max_calls)
                for c in range(callers)
            )
        )
    total = LoadResult()
    for r in results:
        total.merge(r)
    total.elapsed_s = time.perf_counter() - started
    return total


async def _caller(
    stub: Stub,
    flow: UnaryFlow,
    stop_at: float,
    max_calls: int,
) -> LoadResult:
    result = LoadResult()
    for _ in range(max_calls):
        sent = time.perf_counter()
        if sent >= stop_at:
            break
        request = flow.request()
        try:
            reply = await stub.SubmitOrder(request, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            # Not executed (or outcome unknown): the unary form of a CommandError. Counted
            # in ``errors`` (not ``rpc_failures``, which are whole broken streams).
            result.orders += 1
            result.errors += 1
            result.error_reasons[exc.code().name] += 1
            if result.errors == 1:
                log.warning("SubmitOrder failed: %s %s", exc.code().name, exc.details())
            continue
        now = time.perf_counter()
        result.orders += 1
        result.latencies_ms.append((now - sent) * 1e3)
        result.acks.append((now, 1))
        if reply.report.order_id and reply.report.status != types_pb2.ORDER_STATUS_REJECTED:
            result.acked_order_ids.append(reply.report.order_id)
    return result
