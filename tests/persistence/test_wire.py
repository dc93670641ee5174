"""Several statements per round trip on a pooled connection's libpq handle (persistence.wire),
against a real Postgres: results in order, COPY data fed in turn, failures that name their
SQLSTATE and leave the connection usable."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg import pq
from psycopg_pool import AsyncConnectionPool

from persistence.wire import StatementError, Wire


@pytest.fixture
async def conn(pool: AsyncConnectionPool) -> AsyncIterator[psycopg.AsyncConnection]:
    async with pool.connection() as conn:
        yield conn


async def test_statements_answer_in_order_and_copies_are_fed_in_turn(
    conn: psycopg.AsyncConnection,
) -> None:
    wire = Wire(conn)
    await wire.query("CREATE TEMP TABLE t (n int, s text)")
    results = await wire.query(
        "BEGIN; COPY t FROM STDIN; SELECT count(*) FROM t; COPY t FROM STDIN; COMMIT",
        [b"1\ta\n2\tb\n", b"3\tc\n"],
    )
    assert [r.status for r in results] == [
        pq.ExecStatus.COMMAND_OK, pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK,
        pq.ExecStatus.COMMAND_OK, pq.ExecStatus.COMMAND_OK,
    ]  # fmt: skip
    assert results[2].get_value(0, 0) == b"2"  # the first COPY had landed
    assert results[-1].command_status == b"COMMIT"
    cur = await conn.execute("SELECT n, s FROM t ORDER BY n")
    assert await cur.fetchall() == [(1, "a"), (2, "b"), (3, "c")]
    assert conn.pgconn.transaction_status == pq.TransactionStatus.IDLE


async def test_copy_data_larger_than_the_socket_buffers_goes_through(
    conn: psycopg.AsyncConnection,
) -> None:
    data = b"".join(b"%d\t%s\n" % (n, b"x" * 200) for n in range(40_000))  # ~8 MB
    wire = Wire(conn)
    await wire.query("CREATE TEMP TABLE big (n int, s text)")
    (copied,) = await wire.query("COPY big FROM STDIN", [data])
    assert copied.command_tuples == 40_000


async def test_a_failed_statement_names_its_sqlstate_and_what_ran_before_it(
    conn: psycopg.AsyncConnection,
) -> None:
    wire = Wire(conn)
    with pytest.raises(StatementError) as failed:
        await wire.query("BEGIN; SELECT 7; SELECT 1/0; SELECT 8")
    assert failed.value.sqlstate == "22012"  # division_by_zero
    assert "division by zero" in str(failed.value)
    assert [r.get_value(0, 0) for r in failed.value.before[1:]] == [b"7"]  # not 8
    assert conn.pgconn.transaction_status == pq.TransactionStatus.INERROR
    await wire.query("ROLLBACK")
    (one,) = await wire.query("SELECT 1")
    assert one.get_value(0, 0) == b"1"


async def test_bad_copy_data_fails_the_copy_and_nothing_of_it_stays(
    conn: psycopg.AsyncConnection,
) -> None:
    wire = Wire(conn)
    await wire.query("CREATE TEMP TABLE t (n int)")
    with pytest.raises(StatementError) as failed:
        await wire.query("BEGIN; COPY t FROM STDIN; COMMIT", [b"1\nnot a number\n"])
    assert failed.value.sqlstate == "22P02"  # invalid_text_representation
    await wire.query("ROLLBACK")
    cur = await conn.execute("SELECT count(*) FROM t")
    assert await cur.fetchone() == (0,)


async def test_a_literal_holds_any_text_exactly(conn: psycopg.AsyncConnection) -> None:
    odd = "it's a \\ back'slash; SELECT 1/0; --"
    wire = Wire(conn)
    (result,) = await wire.query(f"SELECT {wire.literal(odd)}")
    assert result.get_value(0, 0) == odd.encode()
