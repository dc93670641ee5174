"""The batch writer against a real Postgres: exact COPY text, ordered overlapped commits,
rollback, fencing. (Through the shard the writer is exercised by tests/shard/.)"""

from __future__ import annotations

import pytest
from psycopg import pq
from psycopg_pool import AsyncConnectionPool

from persistence.copy_text import JOURNAL_ROW, ORDER_ROW, array_literals, copy_text
from persistence.errors import FencedError, PersistenceError
from persistence.fencing import claim_next_epoch
from persistence.placements import find_placements
from persistence.rows import FillRow, OrderUpdate
from persistence.writer import BatchWriter
from tests.persistence.support import SYMBOL, batch, journal, order, rows

# --- the wire formats (no database) --------------------------------------------------------


def test_rows_become_tab_separated_lines_with_bools_as_digits() -> None:
    text = copy_text(JOURNAL_ROW, [journal(7, "acc", "c-1")])
    assert text == b"BTC-USD\t7\t1\tacc\tc-1\t7\t1\t1\t1\t1\t1\t100\t5\t0\t0\t0\t0\t5\t1\t{}\n"


@pytest.mark.parametrize(
    ("odd", "escaped"),
    [("back\\slash", "back\\\\slash"), ("tab\there", "tab\\there"), ("new\nline", "new\\nline"),
     ("carriage\rreturn", "carriage\\rreturn"), ("\\N", "\\\\N")],
)  # fmt: skip
def test_strings_that_copy_text_would_misread_are_escaped(odd: str, escaped: str) -> None:
    plain = copy_text(ORDER_ROW, [order(1)])
    text = copy_text(ORDER_ROW, [order(1), order(2, account=odd, cloid=odd)])
    assert text.startswith(plain)
    assert text[len(plain) :].split(b"\t")[2:4] == [escaped.encode()] * 2


def test_update_columns_become_array_literals_with_nulls() -> None:
    updates = [
        OrderUpdate(1, 2, None, 9, None, 0, None, 4),
        OrderUpdate(2, 4, 100, None, 3, 1, 6, 5),
    ]
    assert array_literals(updates) == [
        "{1,2}", "{2,4}", "{NULL,100}", "{9,NULL}", "{NULL,3}", "{0,1}", "{NULL,6}", "{4,5}",
    ]  # fmt: skip


# --- against Postgres ----------------------------------------------------------------------


async def test_strings_are_stored_exactly_escaped_or_not(pool: AsyncConnectionPool) -> None:
    writer = BatchWriter(pool)
    plain = batch()
    plain.orders[1] = order(1, "plain", "")
    plain.journal.append(journal(1, "plain"))
    await writer.commit(plain)
    odd = batch()  # backslashes and a tab: the escaped path
    odd.orders[2] = order(2, "we\\ird", "c\tid")
    odd.journal.append(journal(2, "we\\ird", "c\tid"))
    odd.fills.append(FillRow(SYMBOL, 2, 0, 1, 2, "plain", "we\\ird", 100, 1, 0))
    await writer.commit(odd)
    assert await rows(pool, "SELECT order_id, account, client_order_id FROM orders ORDER BY 1") == [
        (1, "plain", None),  # no client order id: NULL, which the idempotency index skips
        (2, "we\\ird", "c\tid"),
    ]
    journal_rows = "SELECT account, client_order_id, post_only FROM journal ORDER BY seq"
    assert await rows(pool, journal_rows) == [("plain", "", True), ("we\\ird", "c\tid", True)]
    assert await rows(pool, "SELECT taker_account FROM fills") == [("we\\ird",)]


async def test_a_later_batch_updates_rows_of_the_one_committing_before_it(
    pool: AsyncConnectionPool,
) -> None:
    writer = BatchWriter(pool)
    first = batch()
    first.orders[1] = order(1)
    first.journal.append(journal(1))
    second = batch()
    second.updates[1] = OrderUpdate(1, 4, None, None, None, 0, None, 2)  # cancelled
    second.journal.append(journal(2))
    one, two = writer.start(first), writer.start(second)  # both transactions open at once
    await one.commit()
    await two.commit()
    assert await rows(pool, "SELECT status, leaves_qty, updated_seq FROM orders") == [(4, 0, 2)]
    assert await rows(pool, "SELECT seq FROM journal ORDER BY seq") == [(1,), (2,)]


async def test_an_aborted_batch_leaves_nothing(pool: AsyncConnectionPool) -> None:
    writer = BatchWriter(pool)
    rolled_back = batch()
    rolled_back.orders[1] = order(1)
    rolled_back.journal.append(journal(1))
    started = writer.start(rolled_back)
    await started.abort()
    assert await rows(pool, "SELECT count(*) FROM orders") == [(0,)]
    assert await rows(pool, "SELECT count(*) FROM journal") == [(0,)]
    kept = batch()
    kept.journal.append(journal(1))
    await writer.commit(kept)  # the same seq commits afterwards: nothing was left behind
    assert await rows(pool, "SELECT count(*) FROM journal") == [(1,)]


async def test_a_stale_epoch_is_fenced_and_writes_nothing(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        assert await claim_next_epoch(conn, SYMBOL, "shard-2") == 2
    stale = batch(epoch=1)
    stale.journal.append(journal(1))
    with pytest.raises(FencedError) as fenced:
        await BatchWriter(pool).commit(stale)
    assert fenced.value.symbols == {SYMBOL: (1, 2)}
    assert await rows(pool, "SELECT count(*) FROM journal") == [(0,)]


async def test_a_fenced_batch_is_reported_fenced_even_when_its_rows_fail_too(
    pool: AsyncConnectionPool,
) -> None:
    writer = BatchWriter(pool)
    first = batch()
    first.journal.append(journal(1))
    await writer.commit(first)
    async with pool.connection() as conn:  # a new owner, which has written seq 1 already
        assert await claim_next_epoch(conn, SYMBOL, "shard-2") == 2
    stale = batch(epoch=1)
    stale.journal.append(journal(1))  # a duplicate key: the COPY fails as well
    with pytest.raises(FencedError) as fenced:
        await writer.commit(stale)
    assert fenced.value.symbols == {SYMBOL: (1, 2)}


async def test_an_update_that_finds_no_row_never_commits(pool: AsyncConnectionPool) -> None:
    lost = batch()
    lost.journal.append(journal(1))
    lost.updates[99] = OrderUpdate(99, 4, None, None, None, 0, None, 1)  # never inserted
    with pytest.raises(PersistenceError, match="1 of 1 order updates found no row"):
        await BatchWriter(pool).commit(lost)
    assert await rows(pool, "SELECT count(*) FROM journal") == [(0,)]
    async with pool.connection() as conn:  # the pool got its connection back usable
        assert conn.pgconn.transaction_status == pq.TransactionStatus.IDLE


async def test_a_symbol_status_change_commits_with_its_batch(pool: AsyncConnectionPool) -> None:
    halted = batch()
    halted.journal.append(journal(1))
    halted.symbol_status[SYMBOL] = 2
    await BatchWriter(pool).commit(halted)
    assert await rows(pool, "SELECT status FROM symbols") == [(2,)]


async def test_placements_are_found_by_key_whatever_the_ids_hold(
    pool: AsyncConnectionPool,
) -> None:
    writer = BatchWriter(pool)
    stored = batch()
    for seq, (account, cloid) in enumerate([("a", "c1"), ("b", "c\x1fsep"), ("c", "")], 1):
        stored.orders[seq] = order(seq, account, cloid)
        stored.journal.append(journal(seq, account, cloid))
    await writer.commit(stored)
    async with pool.connection() as conn:
        plain = await find_placements(conn, [("a", "c1"), ("a", "nope"), ("x", "c1")])
        odd = await find_placements(conn, [("b", "c\x1fsep"), ("a", "c1")])
    assert [(p.account, p.client_order_id, p.order_id) for p in plain] == [("a", "c1", 1)]
    assert sorted((p.account, p.client_order_id) for p in odd) == [("a", "c1"), ("b", "c\x1fsep")]
