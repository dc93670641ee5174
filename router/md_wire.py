"""Market data updates encoded once per depth group, not once per subscriber.

A StreamMarketDataResponse is only its repeated ``updates`` field (1), so a response is the
concatenation of framed updates (tag, length, bytes): the feed frames each update once and
every subscriber's writer joins the frames it takes. The router's StreamMarketData handler
then writes those bytes as they are (``EncodedResponses`` swaps its response serializer).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from api.interception import Handler, HandlerWrapper
from marketdata.wire import response_entry
from matching.v1 import market_data_pb2

STREAM_MARKET_DATA = "/matching.v1.OrderGatewayService/StreamMarketData"


def framed(updates: Iterable[market_data_pb2.MarketDataUpdate]) -> list[bytes]:
    """Each update as one ``updates`` entry of a StreamMarketDataResponse."""
    return [response_entry(update.SerializeToString()) for update in updates]


class EncodedResponses(HandlerWrapper):
    """StreamMarketData answers with bytes already encoded (``framed``, joined): they go to
    the wire as they are; message objects are still serialized."""

    def wrap(self, method: str, handler: Handler) -> Handler:
        if method != STREAM_MARKET_DATA:
            return handler
        serialize = handler.response_serializer
        assert serialize is not None

        def passthrough(response: Any) -> bytes:
            return response if type(response) is bytes else serialize(response)

        return handler._replace(response_serializer=passthrough)  # type: ignore[no-any-return,attr-defined]
