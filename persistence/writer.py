"""The batch writer: one transaction per batch, COPY for bulk rows, fenced by epoch.

Nothing is acknowledged before a batch's ``commit`` returns. Inside each transaction the
writer first reads ``symbol_owner`` for every symbol the batch touches (FOR SHARE, so a
concurrent claim waits for this commit and then sees its rows) and aborts with FencedError
on any mismatch.

Commits overlap but stay ordered. ``start(batch)`` opens the batch's transaction on its own
pooled connection and writes everything that depends on no earlier batch (the fence check,
the COPYs of new orders, fills and journal rows) right away, while earlier batches may still
be committing. ``commit()`` (called once every earlier batch has committed) applies the
updates of orders (which may have been inserted by the batch just before, so only now are
they visible) and commits; ``abort()`` rolls back. So Postgres works on one batch while
another one's COMMIT waits for its WAL flush, and the shard formats the next one meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg
from psycopg.pq.abc import PGresult
from psycopg_pool import AsyncConnectionPool

from . import failpoints
from .copy_text import (
    COPY_FILLS,
    COPY_JOURNAL,
    COPY_ORDERS,
    FILL_ROW,
    JOURNAL_ROW,
    ORDER_ROW,
    array_literals,
    copy_text,
)
from .errors import FencedError, PersistenceError
from .rows import BatchRows
from .wire import StatementError, Wire

log = logging.getLogger(__name__)

# The batch's order changes arrive as one array per column. NULL in a column means
# "unchanged" (e.g. an order expired by STP: only its status and leaves are known to the
# recorder). Arrays, not a staging table: the planner sizes unnest() from the array, so the
# join is always index lookups on the primary key (a staging table without statistics once
# got a sequential scan of the whole, growing, orders table per batch: docs/benchmarks.md).
_APPLY_UPDATES = (
    "UPDATE orders o SET status = s.status, price = coalesce(s.price, o.price),"
    " quantity = coalesce(s.quantity, o.quantity), cum_qty = coalesce(s.cum_qty, o.cum_qty),"
    " leaves_qty = s.leaves_qty, priority = coalesce(s.priority, o.priority),"
    " updated_seq = s.updated_seq"
    " FROM unnest('%s'::bigint[], '%s'::smallint[], '%s'::bigint[], '%s'::bigint[],"
    " '%s'::bigint[], '%s'::bigint[], '%s'::bigint[], '%s'::bigint[])"
    " AS s(order_id, status, price, quantity, cum_qty, leaves_qty, priority, updated_seq)"
    " WHERE o.order_id = s.order_id"
)

# FOR SHARE: a concurrent epoch claim waits for this batch's commit, then sees its rows.
_FENCE = "SELECT symbol, epoch FROM symbol_owner WHERE symbol IN (%s) FOR SHARE"
_SET_STATUS = "UPDATE symbols SET status = %d WHERE symbol = %s"

# A batch's transaction holds FOR SHARE locks on symbol_owner while it waits for the batch
# before it to commit. If this process froze meanwhile (SIGSTOP, a stall) with the session
# alive, a new owner's epoch claim would wait on those locks for as long: Postgres ends such
# a session after IDLE_IN_TRANSACTION (a healthy wait is one commit, well under a second),
# and any statement after STATEMENT_TIMEOUT (the recovery loader lifts it for itself).
IDLE_IN_TRANSACTION = "2s"
STATEMENT_TIMEOUT = "10s"


async def configure_connection(conn: psycopg.AsyncConnection) -> None:
    """Pool hook: durable commits, key lookups only, bounded lock holding.

    Pooled connections stay in autocommit: work that must be atomic (a batch, a recovery
    snapshot) opens an explicit ``conn.transaction()``; single statements (an epoch claim,
    a lookup) commit by themselves, and nothing is left open when a connection goes back.

    READ COMMITTED is pinned, whatever the server's default: a batch's UPDATE must see the
    rows the batch before it committed while this transaction was already open.

    Every statement a shard runs finds rows by key (orders by id or client order id, a
    symbol's resting orders, journal rows by (symbol, seq)), so its connections forbid
    sequential scans, hash joins and merge joins: for a batch of a few hundred or thousand
    keys the planner would otherwise pick a scan of the whole ``orders`` table, whose cost
    grows with the table (measured: 332 sequential scans reading 6M rows in one 8 s run, and
    Postgres time per order 27-37 us; with these settings 0 scans and 16-20 us, decision 0011).
    """
    await conn.set_autocommit(True)
    settings = {
        "synchronous_commit": "on",
        "default_transaction_isolation": "read committed",
        "idle_in_transaction_session_timeout": IDLE_IN_TRANSACTION,
        "statement_timeout": STATEMENT_TIMEOUT,
        "enable_seqscan": "off",
        "enable_hashjoin": "off",
        "enable_mergejoin": "off",
    }
    for name, value in settings.items():
        await conn.execute(f"SET {name} = '{value}'")


class BatchWriter:
    def __init__(self, pool: AsyncConnectionPool, timeout: float = 10.0) -> None:
        self._pool = pool
        self._timeout = timeout  # waiting for a pooled connection

    def start(self, batch: BatchRows) -> BatchCommit:
        """Open ``batch``'s transaction and write its inserts now (in a task)."""
        return BatchCommit(self._pool, self._timeout, batch)

    async def commit(self, batch: BatchRows) -> None:
        """Write and commit one batch (no other batch in flight)."""
        await self.start(batch).commit()


class BatchCommit:
    """One batch's transaction between ``BatchWriter.start`` and ``commit``/``abort``."""

    def __init__(self, pool: AsyncConnectionPool, timeout: float, batch: BatchRows) -> None:
        self._go: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._task = asyncio.ensure_future(self._run(pool, timeout, batch))

    async def commit(self) -> None:
        """Make the batch durable or raise (FencedError, or PersistenceError if retriable).

        Call only once every batch started before this one has committed."""
        if self._go.done() and not self._go.result():
            raise PersistenceError("batch commit called after abort; nothing was written")
        if not self._go.done():
            self._go.set_result(True)
        await self._task

    async def abort(self) -> None:
        """Roll back (or forget a failed start); never raises."""
        if not self._go.done():
            self._go.set_result(False)
        with contextlib.suppress(PersistenceError, asyncio.CancelledError):
            await self._task

    async def _run(self, pool: AsyncConnectionPool, timeout: float, batch: BatchRows) -> None:
        try:
            async with pool.connection(timeout=timeout) as conn:
                wire = Wire(conn)
                try:
                    await _begin_and_insert(wire, batch)
                    if not await self._go:
                        await wire.query("ROLLBACK")
                        return
                    await _update_rows(wire, batch)
                    failpoints.hit("before_commit")
                    await _commit(wire)
                except BaseException:
                    with contextlib.suppress(Exception):  # a broken connection: the pool drops it
                        await wire.query("ROLLBACK")
                    raise
            failpoints.hit("after_commit")
        except PersistenceError:  # fenced, a failpoint, a lost update, a failed statement
            raise
        except Exception as exc:  # driver, network
            raise PersistenceError(f"batch commit failed: {type(exc).__name__}: {exc}") from exc


async def _begin_and_insert(wire: Wire, batch: BatchRows) -> None:
    """BEGIN, the fence check and what depends on no earlier batch (new rows only), as one
    query: a round trip for the fence and one per COPY."""
    statements, copies = ["BEGIN"], []
    if batch.epochs:
        symbols = ",".join([wire.literal(symbol) for symbol in batch.epochs])
        statements.append(_FENCE % symbols)
    for copy, template, rows in (
        (COPY_ORDERS, ORDER_ROW, batch.orders.values()),
        (COPY_FILLS, FILL_ROW, batch.fills),
        (COPY_JOURNAL, JOURNAL_ROW, batch.journal),
    ):
        if rows:
            statements.append(copy)
            copies.append(copy_text(template, rows))
    try:
        results = await wire.query(";".join(statements), copies)
    except StatementError as exc:  # fenced first: a newer owner's rows may be why it failed
        if batch.epochs and len(exc.before) > 1:
            _check_fence(batch.epochs, exc.before[1])
        raise
    if batch.epochs:
        _check_fence(batch.epochs, results[1])


def _check_fence(epochs: dict[str, int], owners: PGresult) -> None:
    current = {
        _text(owners.get_value(row, 0)): int(_text(owners.get_value(row, 1)))
        for row in range(owners.ntuples)
    }
    stale = {
        symbol: (ours, current.get(symbol, -1))
        for symbol, ours in epochs.items()
        if current.get(symbol) != ours
    }
    if stale:
        raise FencedError(stale)


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode()


async def _update_rows(wire: Wire, batch: BatchRows) -> None:
    """Changes to rows that earlier batches wrote (committed by now), as one query."""
    statements = []
    if batch.updates:
        statements.append(_APPLY_UPDATES % tuple(array_literals(batch.updates.values())))
    for symbol, status in batch.symbol_status.items():
        statements.append(_SET_STATUS % (int(status), wire.literal(symbol)))
    if not statements:
        return
    results = await wire.query(";".join(statements))
    if batch.updates:  # an order not (yet) visible: never commit
        found = results[0].command_tuples or 0
        if found != len(batch.updates):
            raise PersistenceError(
                f"batch commit failed: {len(batch.updates) - found} of"
                f" {len(batch.updates)} order updates found no row"
            )


async def _commit(wire: Wire) -> None:
    (result,) = await wire.query("COMMIT")
    if result.command_status != b"COMMIT":  # an aborted transaction answers ROLLBACK
        raise PersistenceError(f"batch commit failed: COMMIT answered {result.command_status!r}")
