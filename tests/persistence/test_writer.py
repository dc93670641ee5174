"""The batch writer against a real Postgres: exact COPY text, ordered overlapped commits,
rollback, fencing. (Through the shard the writer is exercised by tests/shard/.)"""

from __future__ import annotations

import pytest
from psycopg_pool import AsyncConnectionPool

from persistence.copy_text import JOURNAL_ROW, ORDER_ROW, array_literals, encode_rows
from persistence.errors import FencedError
from persistence.fencing import claim_next_epoch
from persistence.placements import find_placements
from persistence.rows import FillRow, OrderUpdate
from persistence.writer import BatchWriter
from tests.persistence.support import SYMBOL, batch, journal, order, rows

# --- the wire formats (no database) --------------------------------------------------------


def test_rows_become_tab_separated_lines_with_bools_as_digits() -> None:
    text = encode_rows(JOURNAL_ROW, [journal(7, "acc", "c-1")])
    assert text == b"BTC-USD\t7\t1\tacc\tc-1\t7\t1\t1\t1\t1\t1\t100\t5\t0\t0\t0\t0\t5\t1\n"


@pytest.mark.parametrize("bad", ["back\\slash", "tab\there", "new\nline", "carriage\rreturn"])
def test_a_string_that_needs_escaping_is_left_to_psycopg(bad: str) -> None:
    assert encode_rows(ORDER_ROW, [order(1), order(2, account=bad)]) is None
    assert encode_rows(ORDER_ROW, [order(1), order(2, cloid=bad)]) is None


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
    odd = batch()  # backslashes and a tab: the psycopg-escaped path
    odd.orders[2] = order(2, "we\\ird", "c\tid")
    odd.journal.append(journal(2, "we\\ird", "c\tid"))
    odd.fills.append(FillRow(SYMBOL, 2, 0, 1, 2, "plain", "we\\ird", 100, 1))
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
