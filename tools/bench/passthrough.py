"""The raw two-hop ceiling: client -> proxy -> server with the real path's messages, no work.

The cluster benchmark states the router's throughput as a ratio against this pair measured in
the same run (DESIGN section 10: per-message gRPC cost is the wall, and the machine drifts):
- the "server" implements ``ShardService.Execute`` and answers every ShardCommand with a
  minimal ``CommandResult(report=ExecutionReport(order_id=..., status=NEW))``; nothing else;
- the "proxy" implements ``OrderGatewayService.Trade`` and ``SubmitOrder``: each request's
  commands go onto ONE long-lived Execute stream, coalesced with whatever else is queued (the
  router's smart batching: at most ``LINK_INFLIGHT`` batches unanswered, at most 1,000
  commands per batch), and the answers go back to their callers in request order.
Each command is serialized once and framed with the proxy's correlation id and deadline
appended as raw protobuf fields (a ShardCommand parses the last value of a field), so the
proxy pays the per-message and per-command costs of a lean router and no others.

Run as two processes, as in the cluster: ``python -m tools.bench.passthrough server|proxy``;
``PassthroughPair`` starts and stops both.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import grpc

from api.protowire import varint
from matching.v1 import (
    gateway_pb2,
    gateway_pb2_grpc,
    orders_pb2,
    shard_pb2,
    shard_pb2_grpc,
    types_pb2,
)
from tools.services.ports import free_port
from tools.services.process import ServerProcess, wait_until

from .errors import BenchError
from .passthrough_link import PassthroughError, Pending, UpstreamLink, grpc_options

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
STREAM_INFLIGHT = 64  # requests in flight per Trade stream before the proxy stops reading
START_TIMEOUT = 30.0  # one process, from spawn to accepting connections
READY_PROBE_TIMEOUT = 1.0  # one readiness probe of a starting process
STOP_GRACE = 2.0  # in-flight calls get this long at shutdown

_PLACE_ORDER = b"\x1a"  # ShardCommand field 3, length-delimited
_MODULE = (sys.executable, "-m", "tools.bench.passthrough")


class EchoShard(shard_pb2_grpc.ShardServiceServicer):
    """ShardService.Execute answering each command NEW at once: the server hop, no work."""

    def __init__(self) -> None:
        self._order_ids = itertools.count(1)  # unique across streams, like real order ids

    async def Execute(
        self,
        request_iterator: AsyncIterator[shard_pb2.ExecuteRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[shard_pb2.ExecuteResponse]:
        ids, new = self._order_ids, types_pb2.ORDER_STATUS_NEW
        result, report = orders_pb2.CommandResult, orders_pb2.ExecutionReport
        async for request in request_iterator:
            if not request.commands:
                continue  # stream options / subscriptions: never answered
            yield shard_pb2.ExecuteResponse(
                batch_id=request.batch_id,
                results=[
                    result(correlation_id=c.correlation_id, report=report(order_id=n, status=new))
                    for c, n in zip(request.commands, ids, strict=False)  # ids: endless
                ],
            )


class ProxyGateway(gateway_pb2_grpc.OrderGatewayServiceServicer):
    """Trade and SubmitOrder onto the shared Execute stream: the router hop, no routing."""

    def __init__(self, link: UpstreamLink) -> None:
        self.link = link

    async def SubmitOrder(
        self,
        request: gateway_pb2.SubmitOrderRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> gateway_pb2.SubmitOrderResponse:
        body = request.order.SerializeToString()
        framed = _PLACE_ORDER + varint(len(body)) + body  # a ShardCommand with place_order
        pending = self.link.submit((framed,), [0], _deadline_ns(context))
        try:
            (result,) = await pending.future
        except PassthroughError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return gateway_pb2.SubmitOrderResponse(report=result.report)

    async def Trade(
        self,
        request_iterator: AsyncIterator[gateway_pb2.TradeRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[gateway_pb2.TradeResponse]:
        # Answers in request order; past STREAM_INFLIGHT unanswered requests the reader
        # stops reading (the real path's backpressure). The queue itself is unbounded so the
        # end-of-stream marker can always be put without waiting.
        answers: asyncio.Queue[Pending | None] = asyncio.Queue()
        slots = asyncio.Semaphore(STREAM_INFLIGHT)
        reader = asyncio.create_task(self._read(request_iterator, answers, slots, context))
        try:
            while (pending := await answers.get()) is not None:
                try:
                    results = await pending.future
                except PassthroughError as exc:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
                slots.release()
                yield gateway_pb2.TradeResponse(results=results)
        finally:
            reader.cancel()

    async def _read(
        self,
        request_iterator: AsyncIterator[gateway_pb2.TradeRequest],
        answers: asyncio.Queue[Pending | None],
        slots: asyncio.Semaphore,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        try:
            async for request in request_iterator:
                if not request.commands:
                    continue
                await slots.acquire()
                commands = request.commands
                answers.put_nowait(
                    self.link.submit(
                        (c.SerializeToString() for c in commands),
                        [c.correlation_id for c in commands],
                        _deadline_ns(context),
                    )
                )
        finally:
            answers.put_nowait(None)


def _deadline_ns(context: grpc.aio.ServicerContext[Any, Any]) -> int:
    remaining = context.time_remaining()
    return time.time_ns() + int(remaining * 1e9) if remaining is not None else 0


async def serve(role: str, listen: str, upstream: str) -> None:
    """Serve one side of the pair until SIGTERM/SIGINT."""
    server = grpc.aio.server(options=grpc_options())
    link: UpstreamLink | None = None
    if role == "server":
        shard_pb2_grpc.add_ShardServiceServicer_to_server(EchoShard(), server)
    else:
        link = UpstreamLink(upstream)
        await link.start()  # listen only once the upstream is there: ready means ready
        # The RPCs it does not implement answer UNIMPLEMENTED (the generated base class).
        proxy = ProxyGateway(link)  # type: ignore[abstract]
        gateway_pb2_grpc.add_OrderGatewayServiceServicer_to_server(proxy, server)
    if server.add_insecure_port(listen) == 0:
        raise BenchError(f"cannot listen on {listen}")
    await server.start()
    log.info("passthrough %s serving on %s", role, listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(STOP_GRACE)
    if link is not None:
        await link.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench.passthrough",
        description="One side of the raw two-hop pair of `spotmatch bench cluster`.",
    )
    parser.add_argument("role", choices=("server", "proxy"))
    parser.add_argument("--listen", required=True, help="host:port to serve on")
    parser.add_argument("--upstream", default="", help="proxy only: the server's host:port")
    args = parser.parse_args(argv)
    if args.role == "proxy" and not args.upstream:
        parser.error("proxy needs --upstream")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    import uvloop  # noqa: PLC0415 - the real processes run on uvloop too

    uvloop.install()
    asyncio.run(serve(args.role, args.listen, args.upstream))
    return 0


class PassthroughPair:
    """The server and the proxy, each in its own process; ``target`` is the proxy."""

    def __init__(self, log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self._server_addr = f"127.0.0.1:{free_port()}"
        self.target = f"127.0.0.1:{free_port()}"
        self._procs = [
            ServerProcess(
                f"passthrough-{role}",
                [*_MODULE, role, "--listen", addr, "--upstream", self._server_addr],
                log_dir / f"passthrough-{role}.log",
            )
            for role, addr in (("server", self._server_addr), ("proxy", self.target))
        ]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        try:
            for proc, addr in zip(self._procs, (self._server_addr, self.target), strict=True):
                proc.start(cwd=REPO)
                wait_until(
                    partial(_accepting, addr), timeout, proc.name, proc.log_path, proc.is_running
                )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for proc in reversed(self._procs):
            proc.stop()

    def __enter__(self) -> PassthroughPair:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _accepting(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=READY_PROBE_TIMEOUT)
    return True


if __name__ == "__main__":
    sys.exit(main())
