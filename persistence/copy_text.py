"""The writer's wire formats: COPY text for bulk inserts and array literals for updates.

Rows are formatted with one %-template per table: a C-level format per row and one write per
table, instead of psycopg's formatter call and an await per row (measured ~1 us against
~3 us per row, docs/benchmarks.md). Strings are copied verbatim, which is exact unless one
holds a backslash, tab, CR or newline; the edge refuses control characters in ids, but this
module does not rely on that: such a batch is formatted again with its strings escaped.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from .rows import OrderUpdate

ORDER_COLUMNS = (
    "order_id, symbol, account, client_order_id, side, order_type, time_in_force, post_only,"
    " stp, price, quantity, cum_qty, leaves_qty, status, priority, created_seq, updated_seq"
)
FILL_COLUMNS = (
    "symbol, seq, match_index, maker_order_id, taker_order_id, maker_account, taker_account,"
    " price, quantity, maker_leaves_qty"
)
JOURNAL_COLUMNS = (
    "symbol, seq, kind, account, client_order_id, order_id, side, order_type, time_in_force,"
    " post_only, stp, price, quantity, symbol_status, status, reject_code, cum_qty,"
    " leaves_qty, epoch, expired_order_ids"
)
# Orders: an empty client order id is stored as NULL (the idempotency index skips NULLs), so
# the orders COPY reads '' as NULL. No other column of an order row can be empty: the symbol
# and account of an accepted order never are, and numbers never are.
COPY_ORDERS = f"COPY orders ({ORDER_COLUMNS}) FROM STDIN (NULL '')"
COPY_FILLS = f"COPY fills ({FILL_COLUMNS}) FROM STDIN"
COPY_JOURNAL = f"COPY journal ({JOURNAL_COLUMNS}) FROM STDIN"
ORDER_ROW = "%d\t%s\t%s\t%s" + "\t%d" * 13 + "\n"
FILL_ROW = "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%d\t%d\t%d\n"
JOURNAL_ROW = "%s\t%d\t%d\t%s\t%s" + "\t%d" * 14 + "\t%s\n"


# COPY's text format: a backslash starts an escape; tab and newline end fields and rows.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(template: str, rows: Collection[tuple[Any, ...]]) -> bytes:
    """The COPY text of ``rows`` (bools as 1/0)."""
    text = "".join([template % row for row in rows])
    tabs = template.count("\t") * len(rows)
    if text.count("\t") != tabs or text.count("\n") != len(rows) or "\\" in text or "\r" in text:
        text = "".join([template % tuple(map(_escaped, row)) for row in rows])
    return text.encode()


def _escaped(value: object) -> object:
    return value.translate(_ESCAPES) if isinstance(value, str) else value


def array_literals(updates: Iterable[OrderUpdate]) -> list[str]:
    """One Postgres array literal per column of ``updates`` (ints, None as NULL): a join in
    C instead of psycopg's per-element list dumping. ``str`` of an int never holds "None"."""
    return [
        "{" + ",".join(map(str, column)).replace("None", "NULL") + "}"
        for column in zip(*updates, strict=True)
    ]
