"""Server interceptors that wrap a method's handler, once per method rather than per call.

grpc.aio runs every server interceptor on every call, and one that wraps the handler it is
given builds closures and a new RpcMethodHandler each time: ~10-20 us per interceptor per
unary call on a router. The handler a method resolves to does not change while a server
runs, so ``HandlerWrapper`` wraps it on the first call and hands out the same wrapper
after that. The cache is keyed by method name and checked by identity against the handler
it wrapped: a handler that does change (one rebuilt per call by an interceptor further in)
is simply wrapped again, never served a stale wrapper. Only methods that resolve to a
handler are cached, so the cache holds at most the server's registered methods.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


class HandlerWrapper(grpc.aio.ServerInterceptor):
    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    def wrap(self, method: str, handler: Handler) -> Handler:
        """The handler to serve ``method`` with instead of ``handler``."""
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        made = self._wrapped.get(method)
        if made is not None and made[0] is handler:
            return made[1]
        wrapped = self.wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped
