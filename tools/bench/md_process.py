"""Market-data subscribers in a process of their own, for `spotmatch bench cluster`.

In the bench's own process, 100 subscribers applying snapshots and deltas shared one event
loop with the order load generator: their parsing delayed its sends and reads, so the
throughput measured "with market data" counted the bench's loop as much as the cluster.
Here they run in a child process (`python -m tools.bench.md_process TARGET COUNT SYMBOL...`)
that prints ``ready`` once every subscriber holds its first snapshot, answers each
``collect`` line on stdin with one JSON line (``SubscriberStats.summary`` of what they saw
since the previous one), and closes its subscriptions and exits at the end of its input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
from collections.abc import AsyncIterator
from typing import IO, Any

from .errors import BenchError
from .md_load import SYNC_TIMEOUT, collect, subscribed

_READY = b"ready"
_COLLECT = b"collect"
_START_TIMEOUT = SYNC_TIMEOUT + 30.0  # the child's imports, connecting, every first snapshot
_ANSWER_TIMEOUT = 30.0  # one summary (percentiles of the lags it holds)


class SubscriberProcess:
    """The parent's handle on the child: ``collect()`` one summary at a time."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr: IO[bytes]) -> None:
        self._proc = proc
        self._stderr = stderr

    @property
    def pid(self) -> int:
        return self._proc.pid

    async def collect(self) -> dict[str, Any]:
        assert self._proc.stdin is not None
        self._proc.stdin.write(_COLLECT + b"\n")
        await self._proc.stdin.drain()
        line = await self.next_line(_ANSWER_TIMEOUT)
        summary: dict[str, Any] = json.loads(line)
        return summary

    async def next_line(self, timeout: float) -> bytes:
        assert self._proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                line = await self._proc.stdout.readline()
        except TimeoutError:
            line = b""
        if not line:
            raise BenchError(f"market data subscriber process: no answer; {self.stderr_tail()}")
        return line

    def stderr_tail(self) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").strip()
        return f"its stderr ends: {text[-1_000:]}" if text else "it wrote nothing to stderr"

    async def stop(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()  # end of input: the child unsubscribes and exits
        try:
            async with asyncio.timeout(10.0):
                await self._proc.wait()
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()


@contextlib.asynccontextmanager
async def subscriber_process(
    target: str, symbols: list[str], count: int
) -> AsyncIterator[SubscriberProcess]:
    """``count`` subscribers over ``symbols`` in a child process, each holding its first
    snapshot before the block runs; stopped when it ends."""
    with tempfile.TemporaryFile() as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tools.bench.md_process", target, str(count), *symbols,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
        )  # fmt: skip
        handle = SubscriberProcess(proc, stderr)
        try:
            if (await handle.next_line(_START_TIMEOUT)).strip() != _READY:
                why = handle.stderr_tail()
                raise BenchError(f"market data subscriber process did not start; {why}")
            yield handle
        finally:
            await handle.stop()


async def _serve(target: str, count: int, symbols: list[str]) -> None:
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    async with subscribed(target, symbols, count) as subscribers:
        _answer(_READY.decode())
        while line := await commands.readline():
            if line.strip() == _COLLECT:
                _answer(json.dumps(collect(subscribers).summary()))


def _answer(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit("usage: python -m tools.bench.md_process TARGET COUNT SYMBOL...")
    asyncio.run(_serve(sys.argv[1], int(sys.argv[2]), sys.argv[3:]))
