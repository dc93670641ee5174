"""Telling a client's clean half-close from its cancel, on a grpc.aio server stream.

Cancel-on-disconnect (TradeStreamOptions) spares exactly one ending: the client half-closed
and every answer was written. grpc.aio shows a client's cancel to the handler first as the
end of the request stream (the failed read comes back as EOF) and cancels the handler's task
only afterwards, and not at all once the handler has returned. A half-close brings no cancel,
so a stream that looks cleanly ended waits ``CANCEL_GRACE`` for one before it says so
(docs/decisions/0014-clean-stream-end.md).
"""

from __future__ import annotations

import asyncio

# Far above the gap measured between the EOF and the cancel (0.13 ms at most): the
# cancel only has to cross the event loop once, which a loaded machine can slow by tens
# of milliseconds. Only streams whose client asked for cancel-on-disconnect wait, and
# only when they end cleanly: the client gets its OK status this much later.
CANCEL_GRACE = 0.25


async def await_late_cancel() -> None:
    """Wait for a cancel that may still follow an apparently clean end of the stream.

    Raises CancelledError if the client had in fact cancelled; returns if it half-closed.
    """
    await asyncio.sleep(CANCEL_GRACE)
