"""Turns each command and its engine report into the rows persistence makes durable.

Orders first accepted in this batch are kept whole (one COPY row in their final state);
later changes to orders from earlier batches become OrderUpdates, merged per order.
"""

from __future__ import annotations

from persistence.rows import BatchRows, FillRow, JournalRow, OrderRow, OrderUpdate
from shard.engine import (
    AmendOrder,
    CancelOrder,
    Command,
    MassCancel,
    OrderStatus,
    PlaceOrder,
    Report,
    SetSymbolStatus,
)

# Rows are built with tuple.__new__: NamedTuple's generated __new__ is a Python call per
# row, measurable at tens of thousands of rows per second (py-spy, docs/benchmarks.md).
_new = tuple.__new__
KIND_PLACE, KIND_CANCEL, KIND_AMEND, KIND_MASS_CANCEL, KIND_SET_STATUS = 1, 2, 3, 4, 5
_FILLED, _PARTIAL = int(OrderStatus.FILLED), int(OrderStatus.PARTIALLY_FILLED)
_CANCELED, _EXPIRED = int(OrderStatus.CANCELED), int(OrderStatus.EXPIRED)
_REJECTED = OrderStatus.REJECTED
_NONE = "{}"  # no order expired: the journal's empty id array


def id_array(order_ids: tuple[int, ...]) -> str:
    """The Postgres array literal of ``order_ids``, for the journal's COPY text."""
    return "{" + ",".join(map(str, order_ids)) + "}"


def record(cmd: Command, report: Report, epoch: int, rows: BatchRows) -> None:
    """Add the journal row and every order/fill change of one executed command."""
    rows.journal.append(journal_row(cmd, report, epoch))
    seq = report.seq
    if type(cmd) is SetSymbolStatus:
        rows.symbol_status[cmd.symbol] = int(cmd.status)
        return
    if type(cmd) is PlaceOrder:
        if report.order_id:
            _new_order(cmd, report, rows)
    elif type(cmd) is MassCancel:
        for order_id in report.expired:
            _update(rows, _new(OrderUpdate, (order_id, _CANCELED, None, None, None, 0, 0, seq)))
        return
    elif report.order_id and report.status != _REJECTED:  # expired by STP is not a reject
        _own_change(report, rows)
    _makers(report, rows)


def _new_order(cmd: PlaceOrder, report: Report, rows: BatchRows) -> None:
    rows.orders[report.order_id] = _new(
        OrderRow,
        (
            report.order_id,
            cmd.symbol,
            cmd.account,
            cmd.client_order_id,
            int(cmd.side),
            int(cmd.order_type),
            int(cmd.time_in_force),
            cmd.post_only,
            int(cmd.stp),
            cmd.price,
            cmd.quantity,
            report.cum_qty,
            report.leaves_qty,
            int(report.status),
            report.priority,
            report.seq,
            report.seq,
        ),
    )


def _own_change(report: Report, rows: BatchRows) -> None:
    """A cancel or amend of the addressed order."""
    status = int(report.status)
    open_total = report.cum_qty + report.leaves_qty if status != _CANCELED else None
    if status == _EXPIRED:
        open_total = None
    _update(
        rows,
        _new(
            OrderUpdate,
            (
                report.order_id,
                status,
                report.price,
                open_total,
                report.cum_qty,
                report.leaves_qty,
                report.priority,
                report.seq,
            ),
        ),
    )


def _makers(report: Report, rows: BatchRows) -> None:
    seq = report.seq
    for index, fill in enumerate(report.fills):
        rows.fills.append(
            _new(
                FillRow,
                (
                    report.symbol,
                    seq,
                    index,
                    fill.maker_order_id,
                    fill.taker_order_id,
                    fill.maker_account,
                    report.account,
                    fill.price,
                    fill.quantity,
                    fill.maker_leaves,
                ),
            )
        )
        status = _PARTIAL if fill.maker_leaves else _FILLED
        total = fill.maker_cum + fill.maker_leaves
        _update(
            rows,
            _new(
                OrderUpdate,
                (
                    fill.maker_order_id,
                    status,
                    None,
                    total,
                    fill.maker_cum,
                    fill.maker_leaves,
                    None,
                    seq,
                ),
            ),
        )
    for order_id in report.expired:  # makers removed by self-trade prevention
        _update(rows, _new(OrderUpdate, (order_id, _EXPIRED, None, None, None, 0, 0, seq)))


def _update(rows: BatchRows, change: OrderUpdate) -> None:
    order_id, status, price, quantity, cum_qty, leaves_qty, priority, updated_seq = change
    new = rows.orders.get(order_id)
    if new is not None:  # accepted earlier in this same batch: still one whole row
        rows.orders[order_id] = _new(
            OrderRow,
            (
                *new[:9],  # order_id .. stp never change
                new.price if price is None else price,
                new.quantity if quantity is None else quantity,
                new.cum_qty if cum_qty is None else cum_qty,
                leaves_qty,
                status,
                new.priority if priority is None else priority,
                new.created_seq,
                updated_seq,
            ),
        )
        return
    old = rows.updates.get(order_id)
    if old is not None:
        change = _new(
            OrderUpdate, tuple(o if n is None else n for o, n in zip(old, change, strict=True))
        )
    rows.updates[order_id] = change


def journal_row(cmd: Command, report: Report, epoch: int) -> JournalRow:
    r = report
    if type(cmd) is PlaceOrder:  # the common case, built in one step
        return _new(
            JournalRow,
            (
                cmd.symbol,
                r.seq,
                KIND_PLACE,
                cmd.account,
                cmd.client_order_id,
                r.order_id,
                cmd.side,
                cmd.order_type,
                cmd.time_in_force,
                cmd.post_only,
                cmd.stp,
                cmd.price,
                cmd.quantity,
                0,
                r.status,
                r.reject_code,
                r.cum_qty,
                r.leaves_qty,
                epoch,
                id_array(r.expired) if r.expired else _NONE,
            ),
        )
    expired = id_array(r.expired) if r.expired else _NONE
    result = (int(r.status), int(r.reject_code), r.cum_qty, r.leaves_qty, epoch, expired)
    if type(cmd) is CancelOrder:
        return _new(
            JournalRow,
            (
                cmd.symbol,
                r.seq,
                KIND_CANCEL,
                cmd.account,
                cmd.client_order_id,
                cmd.order_id,
                0,
                0,
                0,
                False,
                0,
                0,
                0,
                0,
                *result,
            ),
        )
    if type(cmd) is AmendOrder:
        return _new(
            JournalRow,
            (
                cmd.symbol,
                r.seq,
                KIND_AMEND,
                cmd.account,
                cmd.client_order_id,
                cmd.order_id,
                0,
                0,
                0,
                False,
                0,
                cmd.new_price,
                cmd.new_quantity,
                0,
                *result,
            ),
        )
    if type(cmd) is MassCancel:
        side = 0 if cmd.side is None else int(cmd.side)
        return _new(
            JournalRow,
            (
                cmd.symbol,
                r.seq,
                KIND_MASS_CANCEL,
                cmd.account,
                "",
                0,
                side,
                0,
                0,
                False,
                0,
                0,
                0,
                0,
                *result,
            ),
        )
    assert type(cmd) is SetSymbolStatus
    return _new(
        JournalRow,
        (
            cmd.symbol,
            r.seq,
            KIND_SET_STATUS,
            "",
            "",
            0,
            0,
            0,
            0,
            False,
            0,
            0,
            0,
            int(cmd.status),
            *result,
        ),
    )
