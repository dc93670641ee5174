"""Request bytes that do not parse get INVALID_ARGUMENT, on every RPC of a server.

gRPC parses a request with the handler's deserializer before the handler runs; when that
raises, grpc.aio answers UNKNOWN with the exception's name and text. ``DecodeGuard`` wraps
every handler so that the deserializer returns a marker instead of raising: a unary request
that does not parse fails the call with INVALID_ARGUMENT before the handler runs, and a
streamed one ends the request stream with ``UnparseableRequest``, which our stream handlers
turn into INVALID_ARGUMENT (shard/streams.py, router/streams.py) and which this module turns
into INVALID_ARGUMENT for handlers that let it escape (server reflection).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from .errors import ApiError
from .interception import Handler, HandlerWrapper

_UNPARSEABLE = object()
MESSAGE = "request is not a valid {} message"


class UnparseableRequest(ApiError):
    """A streamed request's bytes do not parse as the method's request message."""


class DecodeGuard(HandlerWrapper):
    def wrap(self, method: str, handler: Handler) -> Handler:
        return handler if handler.request_deserializer is None else _guarded(handler)


def _guarded(handler: Handler) -> Handler:
    parse = handler.request_deserializer
    assert parse is not None
    name = getattr(getattr(parse, "__self__", None), "__name__", "request")
    what = MESSAGE.format(name)

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError:
            return _UNPARSEABLE

    fields: dict[str, Any] = {"request_deserializer": deserialize}
    if handler.unary_unary is not None:
        fields["unary_unary"] = _unary(handler.unary_unary, what)
    elif handler.unary_stream is not None:
        fields["unary_stream"] = _unary(handler.unary_stream, what)
    elif handler.stream_unary is not None:
        fields["stream_unary"] = _streamed(handler.stream_unary, what)
    elif handler.stream_stream is not None:
        fields["stream_stream"] = _streamed(handler.stream_stream, what)
    return handler._replace(**fields)  # type: ignore[no-any-return,attr-defined]


def _unary(behavior: Callable[..., Any], what: str) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behavior):

        async def generator(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if request is _UNPARSEABLE:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, what)
            async for response in behavior(request, context):
                yield response

        return generator

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if request is _UNPARSEABLE:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, what)
        return await behavior(request, context)

    return call


def _streamed(behavior: Callable[..., Any], what: str) -> Callable[..., Any]:
    async def checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            if request is _UNPARSEABLE:
                raise UnparseableRequest(what)
            yield request

    # Our stream handlers read requests in a task of their own and turn its error into
    # INVALID_ARGUMENT themselves; a handler that lets it escape (server reflection) gets
    # the same status here.
    if inspect.isasyncgenfunction(behavior):

        async def generator(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                async for response in behavior(checked(requests), context):
                    yield response
            except UnparseableRequest:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, what)

        return generator

    async def call(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behavior(checked(requests), context)
        except UnparseableRequest:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, what)

    return call
