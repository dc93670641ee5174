"""The router's Trade streams: ordered answers, bounded in flight, slow readers cut off.

The ordered, bounded write side and the stream's run (``run_session``) are
api/stream_session.py, as for the shard's streams.
"""

from __future__ import annotations

from api.stream_session import OrderedSession


class TradeSession(OrderedSession):
    """A Trade stream's session; unsolicited messages are TradeResponses."""

    def __init__(self, inflight: int, write_timeout: float) -> None:
        super().__init__(inflight, write_timeout)
        self.accounts: list[str] = []
        self.cancel_on_disconnect = False

    def cancels_on_disconnect(self) -> bool:
        return self.cancel_on_disconnect
