"""Test support for the stream sessions (api/stream_session.py): a call whose writes
wait for a gate, so a test decides when the writer is stalled."""

from __future__ import annotations

import asyncio

import grpc

from matching.v1 import gateway_pb2, orders_pb2


def fill() -> gateway_pb2.TradeResponse:
    """An unsolicited message of one report (its content does not matter here)."""
    return gateway_pb2.TradeResponse(results=[orders_pb2.CommandResult()])


class GatedContext:
    """A call whose writes wait for ``gate``."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.code: grpc.StatusCode | None = None

    async def write(self, message: object) -> None:
        await self.gate.wait()

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        pass
