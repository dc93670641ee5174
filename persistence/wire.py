"""Several statements in one round trip: simple-protocol queries on a connection's libpq handle.

psycopg's cursor API sends one statement per round trip and spends ~80-180 us of Python per
statement (its query conversion, the COPY object, the waiting generators): ~1.3 ms of the
shard's CPU per batch transaction, which in the cluster, where batches hold tens to a couple
of hundred commands, is most of what a batch costs (docs/benchmarks.md, decision 0022).
A simple query may hold several statements, COPY ... FROM STDIN among them: the server
answers each in turn and asks for each COPY's data when it reaches it. So a batch's BEGIN,
fence check and COPYs go as one query string and cost one wait per COPY instead of two per
statement.

This talks to ``AsyncConnection.pgconn`` (psycopg's documented low-level handle) while
holding the connection out of the pool, so nothing else uses it meanwhile; every query is
read to its end, leaving the connection idle or in a transaction psycopg sees as such.
Values are never interpolated here: callers pass literals they built (numbers, array
literals of numbers, strings through ``literal``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator

import psycopg
from psycopg import pq
from psycopg.pq.abc import PGresult

from .errors import PersistenceError

_COPY_IN = pq.ExecStatus.COPY_IN
_FINE = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)


class StatementError(PersistenceError):
    """A statement of a query failed; the transaction it ran in (if any) is aborted."""

    def __init__(self, result: PGresult, before: list[PGresult]) -> None:
        message = result.get_error_message().strip()
        sqlstate = result.error_field(pq.DiagnosticField.SQLSTATE)
        self.sqlstate = sqlstate.decode() if sqlstate else ""
        self.before = before  # the results of the statements that ran before it
        super().__init__(f"[{self.sqlstate}] {message}")


class Wire:
    """Simple queries, one at a time, on a connection taken from the pool."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self._pg = conn.pgconn
        self._escaping = pq.Escaping(self._pg)
        self._loop = asyncio.get_running_loop()

    def literal(self, text: str) -> str:
        """``text`` as an SQL string literal, quoted by libpq for this connection."""
        return self._escaping.escape_literal(text.encode()).decode()

    async def query(self, sql: str, copies: Iterable[bytes] = ()) -> list[PGresult]:
        """Run ``sql`` (one or more statements); each COPY ... FROM STDIN in it is fed the
        next of ``copies``. Returns the statements' results in order, or raises
        StatementError for the first that failed (the server skips the ones after it; its
        ``before`` holds the results of the ones before)."""
        pg = self._pg
        pg.send_query(sql.encode())
        await self._flush()
        data: Iterator[bytes] = iter(copies)
        results: list[PGresult] = []
        failed: PGresult | None = None
        while (result := await self._next_result()) is not None:
            if result.status == _COPY_IN:
                await self._copy_in(next(data, b""))
            elif failed is None:
                if result.status in _FINE:
                    results.append(result)
                else:
                    failed = result
        if failed is not None:
            raise StatementError(failed, results)
        return results

    async def _copy_in(self, data: bytes) -> None:
        pg = self._pg
        while data and not pg.put_copy_data(data):  # 0: libpq's buffer is full, flush first
            await self._flush()
        while not pg.put_copy_end():
            await self._flush()
        await self._flush()

    async def _next_result(self) -> PGresult | None:
        pg = self._pg
        while pg.is_busy():
            await self._ready(write=False)
            pg.consume_input()
        return pg.get_result()

    async def _flush(self) -> None:
        while self._pg.flush():  # 1: more to send, the socket is full
            await self._ready(write=True)

    async def _ready(self, *, write: bool) -> None:
        fd, loop = self._pg.socket, self._loop
        ready = loop.create_future()
        (loop.add_writer if write else loop.add_reader)(fd, _resolve, ready)
        try:
            await ready
        finally:
            (loop.remove_writer if write else loop.remove_reader)(fd)


def _resolve(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)
