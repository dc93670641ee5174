"""Checkers that judge a run from the durable record in Postgres, never from logs.

- every acknowledged order is in Postgres;
- each symbol's journal is gap-free (1..N) and its epochs never go down;
- replaying the journal's command sequence through the reference matcher gives exactly the
  durable fills (no missing, extra or duplicate fills) and exactly the resting orders that
  recovery would load (the rebuilt book equals the last committed book).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import psycopg

from shard.engine import (
    AmendOrder,
    CancelOrder,
    Command,
    MassCancel,
    PlaceOrder,
    SetSymbolStatus,
    SymbolSpec,
)
from shard.recording import (
    KIND_AMEND,
    KIND_CANCEL,
    KIND_MASS_CANCEL,
    KIND_PLACE,
    KIND_SET_STATUS,
)
from tests.shard.engine.reference import ReferenceEngine


@dataclass
class RecordSummary:
    commands: dict[str, int] = field(default_factory=dict)  # per symbol
    fills: int = 0
    resting: int = 0


def journal_command(row: tuple) -> Command:  # type: ignore[type-arg]
    """The command a journal row recorded (the inverse of shard.recording.journal_row)."""
    (
        symbol,
        _seq,
        kind,
        account,
        cloid,
        order_id,
        side,
        order_type,
        tif,
        post_only,
        stp,
        price,
        quantity,
        symbol_status,
    ) = row[:14]
    # Raw ints, not enum members: the journal also holds rejected commands whose values
    # were out of range, and the matcher must see exactly what the shard saw.
    if kind == KIND_PLACE:
        return PlaceOrder(
            symbol, account, side, quantity, price, order_type, tif, post_only, stp, cloid
        )
    if kind == KIND_CANCEL:
        return CancelOrder(symbol, account, order_id, cloid)
    if kind == KIND_AMEND:
        return AmendOrder(symbol, account, order_id, cloid, price, quantity)
    if kind == KIND_MASS_CANCEL:
        return MassCancel(symbol, account, None if side == 0 else side)
    assert kind == KIND_SET_STATUS, kind
    return SetSymbolStatus(symbol, symbol_status)


def check_durable_record(dsn: str, acked_order_ids: Iterable[int] = ()) -> RecordSummary:
    summary = RecordSummary()
    with psycopg.connect(dsn) as conn:
        _check_acked(conn, set(acked_order_ids))
        _check_claims(conn)
        specs = {
            row[0]: SymbolSpec(row[0], row[1], row[2], row[3], row[4], row[5])
            for row in conn.execute(
                "SELECT symbol, symbol_id, tick_size, lot_size, min_quantity, max_quantity"
                " FROM symbols"
            )
        }
        for symbol, spec in sorted(specs.items()):
            count, fills, resting = _check_symbol(conn, spec)
            summary.commands[symbol] = count
            summary.fills += fills
            summary.resting += resting
    return summary


def _check_acked(conn: psycopg.Connection, acked: set[int]) -> None:  # type: ignore[type-arg]
    if not acked:
        return
    rows = conn.execute("SELECT order_id FROM orders WHERE order_id = ANY(%s)", (list(acked),))
    found = {r[0] for r in rows}
    missing = acked - found
    assert not missing, f"{len(missing)} acknowledged orders are not durable: {sorted(missing)[:5]}"


def _check_claims(conn: psycopg.Connection) -> None:  # type: ignore[type-arg]
    """Every order placed with a client order id was claimed for its own symbol first."""
    unclaimed = conn.execute(
        "SELECT o.order_id, o.symbol, c.symbol FROM orders o"
        " LEFT JOIN client_order_claims c USING (account, client_order_id)"
        " WHERE o.client_order_id IS NOT NULL AND c.symbol IS DISTINCT FROM o.symbol LIMIT 5"
    ).fetchall()
    assert not unclaimed, f"orders not claimed for their symbol (id, symbol, claim): {unclaimed}"


def _check_symbol(conn: psycopg.Connection, spec: SymbolSpec) -> tuple[int, int, int]:  # type: ignore[type-arg]
    journal = conn.execute(
        "SELECT symbol, seq, kind, account, client_order_id, order_id, side, order_type,"
        " time_in_force, post_only, stp, price, quantity, symbol_status, status, reject_code,"
        " cum_qty, leaves_qty, epoch FROM journal WHERE symbol = %s ORDER BY seq",
        (spec.symbol,),
    ).fetchall()
    seqs = [row[1] for row in journal]
    assert seqs == list(range(1, len(seqs) + 1)), f"{spec.symbol}: journal has gaps or dupes"
    epochs = [row[18] for row in journal]
    assert epochs == sorted(epochs), f"{spec.symbol}: a commit carries an older epoch"
    reference = ReferenceEngine()
    reference.add_symbol(spec)
    expected_fills = []
    for row in journal:
        report = reference.execute(journal_command(row))
        assert report.seq == row[1]
        assert (
            int(report.status),
            int(report.reject_code),
            report.cum_qty,
            report.leaves_qty,
        ) == tuple(row[14:18]), f"{spec.symbol} seq {row[1]}: journal result differs from replay"
        expected_fills += [
            (report.seq, i, f.maker_order_id, f.taker_order_id, f.price, f.quantity)
            for i, f in enumerate(report.fills)
        ]
    durable_fills = conn.execute(
        "SELECT seq, match_index, maker_order_id, taker_order_id, price, quantity FROM fills"
        " WHERE symbol = %s ORDER BY seq, match_index",
        (spec.symbol,),
    ).fetchall()
    assert [tuple(f) for f in durable_fills] == expected_fills, f"{spec.symbol}: fills differ"
    _check_resting(conn, spec.symbol, reference)
    return len(journal), len(durable_fills), len(reference.book(spec.symbol).open_orders())


def _check_resting(conn: psycopg.Connection, symbol: str, reference: ReferenceEngine) -> None:  # type: ignore[type-arg]
    expected = defaultdict(list)
    for o in reference.book(symbol).open_orders():
        expected[o.side].append((o.order_id, o.price, o.cum_qty, o.leaves_qty, o.priority))
    durable = defaultdict(list)
    for side, *rest in conn.execute(
        "SELECT side, order_id, price, cum_qty, leaves_qty, priority FROM orders"
        " WHERE symbol = %s AND leaves_qty > 0"
        " ORDER BY CASE WHEN side = 1 THEN -price ELSE price END, priority",
        (symbol,),
    ):
        durable[side].append(tuple(rest))
    assert dict(durable) == dict(expected), f"{symbol}: durable resting orders differ from replay"
