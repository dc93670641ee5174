"""ShardService.Execute: the router's long-lived stream of command batches."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from api.request_validation import validate_execute_request
from api.status import bad_request_status
from api.stream_session import run_session
from matching.v1 import orders_pb2, shard_pb2, shard_pb2_grpc
from shard.config import ShardConfig
from shard.engine import MassCancel
from shard.errors import Overloaded
from shard.pipeline import Pipeline
from shard.results import RequestTimers, execute_commands
from shard.streams import StreamSession, Subscribers

log = logging.getLogger(__name__)

CANCEL_CHUNK = 1_000  # mass cancels per submission (a batch matches synchronously)


def _wrap(results: list[orders_pb2.CommandResult], batch_id: Any) -> shard_pb2.ExecuteResponse:
    return shard_pb2.ExecuteResponse(batch_id=batch_id or 0, results=results)


class ExecuteServicer(shard_pb2_grpc.ShardServiceServicer):
    def __init__(
        self,
        pipeline: Pipeline,
        subscribers: Subscribers,
        config: ShardConfig,
        timers: RequestTimers,
    ) -> None:
        self._pipeline = pipeline
        self._subscribers = subscribers
        self._config = config
        self._timed = timers.get("execute")
        self._sessions: set[StreamSession] = set()  # open Execute streams
        self._telling: set[asyncio.Task[None]] = set()  # release markers on their way
        pipeline.ownership.on_release.append(self._released)

    async def Execute(  # type: ignore[override]
        self,
        request_iterator: AsyncIterator[shard_pb2.ExecuteRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        session = StreamSession(self._config.stream_inflight, self._config.stream_write_timeout)

        async def read() -> None:
            first = True
            async for request in request_iterator:
                await self._accept(request, session, context, first_message=first)
                first = False

        async def close(clean: bool) -> None:
            # However it ends, clean or not: accounts the router still has subscribed are
            # cancelled (it unsubscribes those whose clients ended cleanly; shard.proto).
            self._sessions.discard(session)
            self._subscribers.unsubscribe_all(session)
            await cancel_on_disconnect(self._pipeline, session, clean=False)

        self._sessions.add(session)
        await run_session(session, context, read, close)

    def _released(self, symbol: str, epoch: int) -> None:
        task = asyncio.ensure_future(self._tell_released(symbol, epoch))
        self._telling.add(task)
        task.add_done_callback(self._telling.discard)

    async def _tell_released(self, symbol: str, epoch: int) -> None:
        """Tell every router the symbol is released, behind everything each stream will be
        sent about it: batches of it matched before the release (dropped because the table
        gives it to another shard, they may still commit) publish their reports first."""
        try:
            await self._pipeline.barrier()
        except Exception as exc:  # failed or stopping: those batches publish nothing
            log.debug("barrier before the release of %s: %s", symbol, exc)
        message = shard_pb2.ExecuteResponse(
            released=[shard_pb2.SymbolReleased(symbol=symbol, epoch=epoch)]
        )
        for session in self._sessions:
            session.deliver(message)

    async def _accept(
        self,
        request: shard_pb2.ExecuteRequest,
        session: StreamSession,
        context: grpc.aio.ServicerContext[Any, Any],
        *,
        first_message: bool,
    ) -> None:
        # Subscribed accounts end up in journal rows (their cancels on disconnect): one the
        # database cannot store would fail every batch those cancels ride in.
        violations = validate_execute_request(request, first_message=first_message)
        if violations:
            status = bad_request_status(violations)
            await context.abort(status.code, status.details, status.trailing_metadata)
        if first_message:  # before its subscriptions: they take the reports held for it
            session.router_id = request.options.router_id
        self._subscribers.subscribe(session, _wrap, [sub.account for sub in request.subscribe])
        for sub in request.subscribe:
            if sub.cancel_on_disconnect:
                session.cancel_on_disconnect.add(sub.account)
            else:
                session.cancel_on_disconnect.discard(sub.account)
        for account in request.unsubscribe_accounts:
            self._subscribers.unsubscribe(session, account)
            session.cancel_on_disconnect.discard(account)
        if request.commands:
            await session.enqueue(functools.partial(self._run, request))

    async def _run(self, request: shard_pb2.ExecuteRequest) -> shard_pb2.ExecuteResponse:
        response = shard_pb2.ExecuteResponse(batch_id=request.batch_id)
        await execute_commands(
            self._pipeline, request.commands, response.results, request.ByteSize(),
            timed=self._timed,
        )  # fmt: skip
        return response


async def cancel_on_disconnect(
    pipeline: Pipeline, session: StreamSession, *, clean: bool = False
) -> None:
    """Cancel the open orders of accounts whose stream asked for it, on every owned symbol,
    unless the stream ended ``clean`` (a client's half-close after every answer; a router's
    Execute stream always passes False). Symbols reloading or moving now, and cancels that
    cannot run, are owed: the pipeline runs them once the symbol serves here again."""
    if not session.cancel_on_disconnect or clean:
        return
    accounts = sorted(session.cancel_on_disconnect)
    serving = pipeline.ownership.serving()
    for symbol in set(pipeline.ownership.owned()).difference(serving):
        pipeline.owe_cancels(symbol, accounts)
    commands = [MassCancel(symbol, account) for account in accounts for symbol in serving]
    # In chunks: a submission is matched whole, and these are accounts x symbols.
    chunks = [commands[i : i + CANCEL_CHUNK] for i in range(0, len(commands), CANCEL_CHUNK)]
    done = await asyncio.gather(
        *(pipeline.cancel_for_gone_client(c) for c in chunks), return_exceptions=True
    )
    refused = [e for e in done if isinstance(e, BaseException)]
    for exc in refused:
        if not isinstance(exc, Overloaded):
            raise exc
    if refused:  # shutting down: the orders stay (durably) as they are
        log.warning("cancel on disconnect not run for %d accounts: %s",
                    len(session.cancel_on_disconnect), refused[0])  # fmt: skip
