"""A loopback TCP proxy whose connections a test can break: a network failure between two
processes that both stay up (each side sees its connection reset); or whose replies it can
hold back a while (a slow path: the connection stays up, the bytes arrive late)."""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self._replies = asyncio.Event()  # set: bytes from the target flow to the client
        self._replies.set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def hold_replies(self) -> None:
        """Hold back what the target sends until ``release_replies``."""
        self._replies.clear()

    def release_replies(self) -> None:
        self._replies.set()

    def break_all(self) -> None:
        """Reset every connection through the proxy now; new ones are still accepted."""
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.break_all()
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for source, sink, gate in ((reader, up_writer, None), (up_reader, writer, self._replies)):
            pump = asyncio.create_task(_pump(source, sink, gate))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)


async def _pump(
    source: asyncio.StreamReader, sink: asyncio.StreamWriter, gate: asyncio.Event | None
) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await source.read(65536):
            if gate is not None:
                await gate.wait()
            sink.write(data)
            await sink.drain()
    sink.transport.abort()
