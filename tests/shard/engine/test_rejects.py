"""Every reject code: one case each (more for some), the check order, and the reject shape.

Each case asserts the exact rejection report (echoed fields, zeros), that the seq advanced
by exactly one, and that no book changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, cast

import pytest

from shard.engine.types import (
    INT64_MAX,
    AmendOrder,
    CancelOrder,
    Command,
    MassCancel,
    OpenOrder,
    OrderStatus,
    OrderType,
    PlaceOrder,
    RejectCode,
    Report,
    SetSymbolStatus,
    Side,
    StpMode,
    SymbolStatus,
    TimeInForce,
)
from tests.shard.engine.flows import BTC, DEFAULT_SYMBOLS, ETH, buy, order_id, sell
from tests.shard.engine.invariants import EngineLike, book_state

S, E = BTC.symbol, ETH.symbol
C = RejectCode
BIG = 2**62
HALT = SetSymbolStatus(S, SymbolStatus.HALTED)
IOC, FOK = TimeInForce.IOC, TimeInForce.FOK


def oid(seq: int) -> int:
    return order_id(BTC, seq)


def eth_oid(seq: int) -> int:
    return order_id(ETH, seq)


class Case(NamedTuple):
    setup: Sequence[Command]
    cmd: Command
    code: RejectCode


FILLED_4_OF_10 = [buy(100, 10, "alice"), sell(100, 4, "bob")]
ETH_ORDER = [buy(1000, 20, "alice", symbol=E)]

CASES: dict[str, Case] = {
    "place-empty-account": Case([], buy(100, 1, ""), C.INVALID_ACCOUNT),
    "place-side-0": Case([], PlaceOrder(S, "alice", cast(Side, 0), 1, 100), C.INVALID_SIDE),
    "place-side-3": Case([], PlaceOrder(S, "alice", cast(Side, 3), 1, 100), C.INVALID_SIDE),
    "place-type-0": Case([], buy(100, 1, order_type=cast(OrderType, 0)), C.INVALID_ORDER_TYPE),
    "place-tif-4": Case(
        [], buy(100, 1, time_in_force=cast(TimeInForce, 4)), C.INVALID_TIME_IN_FORCE
    ),
    "place-stp-0": Case([], buy(100, 1, stp=cast(StpMode, 0)), C.INVALID_STP_MODE),
    "place-coid-65": Case([], buy(100, 1, client_order_id="x" * 65), C.CLIENT_ORDER_ID_TOO_LONG),
    "place-halted": Case([HALT], buy(100, 1), C.SYMBOL_HALTED),
    "place-post-only-ioc": Case(
        [], buy(100, 1, post_only=True, time_in_force=IOC), C.POST_ONLY_NOT_ALLOWED
    ),
    "place-limit-price-0": Case([], buy(0, 1), C.INVALID_PRICE),
    "place-limit-price-neg": Case([], sell(-1, 1), C.INVALID_PRICE),
    "place-limit-price-huge": Case([], buy(INT64_MAX + 1, 1), C.INVALID_PRICE),
    "place-market-with-price": Case([], buy(100, 1, order_type=OrderType.MARKET), C.INVALID_PRICE),
    "place-price-not-tick": Case([], buy(1003, 20, symbol=E), C.PRICE_NOT_TICK_MULTIPLE),
    "place-qty-0": Case([], buy(100, 0), C.INVALID_QUANTITY),
    "place-qty-neg": Case([], buy(100, -1), C.INVALID_QUANTITY),
    "place-qty-huge": Case([], buy(1, INT64_MAX + 1), C.INVALID_QUANTITY),
    "place-qty-not-lot": Case([], buy(1000, 25, symbol=E), C.QUANTITY_NOT_LOT_MULTIPLE),
    "place-qty-below-min": Case([], buy(1000, 10, symbol=E), C.QUANTITY_BELOW_MIN),
    "place-qty-above-max": Case([], buy(1000, 5010, symbol=E), C.QUANTITY_ABOVE_MAX),
    "place-notional": Case([], buy(4, INT64_MAX // 4 + 1), C.NOTIONAL_OVERFLOW),
    "place-notional-max-price": Case([], sell(INT64_MAX, 2), C.NOTIONAL_OVERFLOW),
    "place-duplicate-coid": Case(
        [buy(100, 1, client_order_id="d")],
        sell(200, 1, client_order_id="d"),
        C.DUPLICATE_CLIENT_ORDER_ID,
    ),
    "place-level-overflow": Case([buy(1, BIG)], buy(1, BIG), C.LEVEL_QUANTITY_OVERFLOW),
    "place-post-only-would-take": Case(
        [sell(100, 1, "bob")], buy(100, 1, post_only=True), C.POST_ONLY_WOULD_TAKE
    ),
    "place-fok": Case([sell(100, 1, "bob")], buy(100, 2, time_in_force=FOK), C.FOK_NOT_FILLABLE),
    "cancel-empty-account": Case([buy(100, 1)], CancelOrder(S, "", oid(1)), C.INVALID_ACCOUNT),
    "cancel-no-reference": Case([buy(100, 1)], CancelOrder(S, "alice"), C.MISSING_ORDER_REFERENCE),
    "cancel-unknown-id": Case([buy(100, 1)], CancelOrder(S, "alice", oid(9)), C.UNKNOWN_ORDER),
    "cancel-unknown-coid": Case(
        [buy(100, 1, client_order_id="k")],
        CancelOrder(S, "alice", client_order_id="j"),
        C.UNKNOWN_ORDER,
    ),
    "amend-empty-account": Case(
        [buy(100, 1)], AmendOrder(S, "", oid(1), new_quantity=2), C.INVALID_ACCOUNT
    ),
    "amend-no-reference": Case(
        [buy(100, 1)], AmendOrder(S, "alice", new_quantity=2), C.MISSING_ORDER_REFERENCE
    ),
    "amend-halted": Case(
        [buy(100, 1), HALT], AmendOrder(S, "alice", oid(1), new_quantity=2), C.SYMBOL_HALTED
    ),
    "amend-unknown-id": Case(
        [buy(100, 1)], AmendOrder(S, "alice", oid(2), new_quantity=2), C.UNKNOWN_ORDER
    ),
    "amend-unknown-coid": Case(
        [buy(100, 1, client_order_id="k")],
        AmendOrder(S, "alice", client_order_id="K", new_quantity=2),
        C.UNKNOWN_ORDER,
    ),
    "amend-price-neg": Case(
        [buy(100, 1)], AmendOrder(S, "alice", oid(1), new_price=-1), C.INVALID_PRICE
    ),
    "amend-price-huge": Case(
        [buy(100, 1)], AmendOrder(S, "alice", oid(1), new_price=INT64_MAX + 1), C.INVALID_PRICE
    ),
    "amend-price-not-tick": Case(
        ETH_ORDER, AmendOrder(E, "alice", eth_oid(1), new_price=1001), C.PRICE_NOT_TICK_MULTIPLE
    ),
    "amend-qty-neg": Case(
        [buy(100, 1)], AmendOrder(S, "alice", oid(1), new_quantity=-1), C.INVALID_QUANTITY
    ),
    "amend-qty-huge": Case(
        [buy(100, 1)],
        AmendOrder(S, "alice", oid(1), new_quantity=INT64_MAX + 1),
        C.INVALID_QUANTITY,
    ),
    "amend-qty-not-lot": Case(
        ETH_ORDER, AmendOrder(E, "alice", eth_oid(1), new_quantity=35), C.QUANTITY_NOT_LOT_MULTIPLE
    ),
    "amend-qty-below-min": Case(
        ETH_ORDER, AmendOrder(E, "alice", eth_oid(1), new_quantity=10), C.QUANTITY_BELOW_MIN
    ),
    "amend-qty-above-max": Case(
        ETH_ORDER, AmendOrder(E, "alice", eth_oid(1), new_quantity=5010), C.QUANTITY_ABOVE_MAX
    ),
    "amend-not-above-filled": Case(
        FILLED_4_OF_10,
        AmendOrder(S, "alice", oid(1), new_quantity=4),
        C.AMEND_QUANTITY_NOT_ABOVE_FILLED,
    ),
    "amend-notional": Case(
        [buy(4, 1)],
        AmendOrder(S, "alice", oid(1), new_quantity=INT64_MAX // 4 + 1),
        C.NOTIONAL_OVERFLOW,
    ),
    "amend-notional-by-price": Case(
        [buy(4, 3)], AmendOrder(S, "alice", oid(1), new_price=INT64_MAX // 2), C.NOTIONAL_OVERFLOW
    ),
    "amend-level-overflow-reprice": Case(
        [buy(1, BIG), buy(1, BIG // 2), buy(2, BIG // 2)],
        AmendOrder(S, "alice", oid(3), new_price=1),
        C.LEVEL_QUANTITY_OVERFLOW,
    ),
    "amend-level-overflow-increase": Case(
        [buy(1, BIG), buy(1, BIG - 1)],
        AmendOrder(S, "alice", oid(2), new_quantity=BIG),
        C.LEVEL_QUANTITY_OVERFLOW,
    ),
    "amend-post-only-would-take": Case(
        [sell(101, 1, "bob"), buy(99, 1, post_only=True)],
        AmendOrder(S, "alice", oid(2), new_price=101),
        C.POST_ONLY_WOULD_TAKE,
    ),
    "mass-empty-account": Case([buy(100, 1)], MassCancel(S, ""), C.INVALID_ACCOUNT),
    "mass-side-3": Case([buy(100, 1)], MassCancel(S, "alice", cast(Side, 3)), C.INVALID_SIDE),
}

# Check order: when several checks fail, the first in the spec's list wins.
PRECEDENCE: dict[str, Case] = {
    "account-before-side": Case([], PlaceOrder(S, "", cast(Side, 0), 1, 100), C.INVALID_ACCOUNT),
    "side-before-type": Case(
        [], PlaceOrder(S, "a", cast(Side, 0), 1, 100, cast(OrderType, 0)), C.INVALID_SIDE
    ),
    "type-before-tif": Case(
        [],
        buy(100, 1, order_type=cast(OrderType, 0), time_in_force=cast(TimeInForce, 0)),
        C.INVALID_ORDER_TYPE,
    ),
    "tif-before-stp": Case(
        [],
        buy(100, 1, time_in_force=cast(TimeInForce, 0), stp=cast(StpMode, 0)),
        C.INVALID_TIME_IN_FORCE,
    ),
    "stp-before-coid": Case(
        [], buy(100, 1, stp=cast(StpMode, 0), client_order_id="x" * 65), C.INVALID_STP_MODE
    ),
    "coid-before-halted": Case(
        [HALT], buy(100, 1, client_order_id="x" * 65), C.CLIENT_ORDER_ID_TOO_LONG
    ),
    "halted-before-post-only": Case(
        [HALT], buy(100, 1, post_only=True, time_in_force=IOC), C.SYMBOL_HALTED
    ),
    "post-only-before-price": Case(
        [], buy(-1, 1, post_only=True, time_in_force=FOK), C.POST_ONLY_NOT_ALLOWED
    ),
    "price-before-quantity": Case([], buy(0, 0), C.INVALID_PRICE),
    "tick-before-quantity": Case([], buy(1001, 0, symbol=E), C.PRICE_NOT_TICK_MULTIPLE),
    "lot-before-min": Case([], buy(1000, 15, symbol=E), C.QUANTITY_NOT_LOT_MULTIPLE),
    "quantity-before-notional": Case([], buy(2, INT64_MAX + 1), C.INVALID_QUANTITY),
    "notional-before-duplicate": Case(
        [buy(100, 1, client_order_id="d")],
        buy(3, INT64_MAX // 2, client_order_id="d"),
        C.NOTIONAL_OVERFLOW,
    ),
    "duplicate-before-level": Case(
        [buy(1, BIG, client_order_id="d")],
        buy(1, BIG, client_order_id="d"),
        C.DUPLICATE_CLIENT_ORDER_ID,
    ),
    "duplicate-before-post-only": Case(
        [sell(100, 1, client_order_id="d")],
        buy(100, 1, post_only=True, client_order_id="d"),
        C.DUPLICATE_CLIENT_ORDER_ID,
    ),
    "duplicate-before-fok": Case(
        [buy(100, 1, client_order_id="d")],
        sell(100, 5, time_in_force=FOK, client_order_id="d"),
        C.DUPLICATE_CLIENT_ORDER_ID,
    ),
    "amend-account-first": Case([buy(100, 1)], AmendOrder(S, ""), C.INVALID_ACCOUNT),
    "amend-reference-before-halted": Case(
        [HALT], AmendOrder(S, "alice"), C.MISSING_ORDER_REFERENCE
    ),
    "amend-halted-before-unknown": Case([HALT], AmendOrder(S, "alice", oid(9)), C.SYMBOL_HALTED),
    "amend-unknown-before-price": Case(
        [], AmendOrder(S, "alice", oid(9), new_price=-1), C.UNKNOWN_ORDER
    ),
    "amend-price-before-quantity": Case(
        [buy(100, 1)], AmendOrder(S, "alice", oid(1), "", -1, -1), C.INVALID_PRICE
    ),
    "amend-tick-before-min": Case(
        ETH_ORDER,
        AmendOrder(E, "alice", eth_oid(1), new_price=1, new_quantity=10),
        C.PRICE_NOT_TICK_MULTIPLE,
    ),
    "amend-quantity-before-filled": Case(
        FILLED_4_OF_10, AmendOrder(S, "alice", oid(1), new_quantity=-4), C.INVALID_QUANTITY
    ),
    "amend-filled-before-notional": Case(
        FILLED_4_OF_10,
        AmendOrder(S, "alice", oid(1), new_price=INT64_MAX // 2, new_quantity=4),
        C.AMEND_QUANTITY_NOT_ABOVE_FILLED,
    ),
    "amend-notional-before-level": Case(
        [buy(2, BIG - 1), buy(2, BIG - 1, "bob"), buy(3, 1)],
        AmendOrder(S, "alice", oid(3), new_price=2, new_quantity=BIG),
        C.NOTIONAL_OVERFLOW,
    ),
    "mass-account-before-side": Case([], MassCancel(S, "", cast(Side, 9)), C.INVALID_ACCOUNT),
}


def expected_reject(cmd: Command, seq: int, code: RejectCode, side: int = 0) -> Report:
    """The shape every rejection has: echoed ids and account, zeros, empty tuples; the side
    is a PlaceOrder's own, else ``side`` (the addressed order's side if it was found)."""
    order_id_ = cmd.order_id if isinstance(cmd, CancelOrder | AmendOrder) else 0
    coid = cmd.client_order_id if isinstance(cmd, PlaceOrder | CancelOrder | AmendOrder) else ""
    account = "" if isinstance(cmd, SetSymbolStatus) else cmd.account
    price = cmd.price if isinstance(cmd, PlaceOrder) else 0
    return Report(
        cmd.symbol,
        seq,
        order_id_,
        coid,
        account,
        OrderStatus.REJECTED,
        code,
        price,
        0,
        0,
        0,
        (),
        (),
        cmd.side if isinstance(cmd, PlaceOrder) else side,
    )


def _found_side(eng: EngineLike, cmd: Command, code: RejectCode) -> int:
    """The side of the order a rejected cancel or amend found (0 if none was found)."""
    not_found = {C.INVALID_ACCOUNT, C.MISSING_ORDER_REFERENCE, C.SYMBOL_HALTED, C.UNKNOWN_ORDER}
    if not isinstance(cmd, CancelOrder | AmendOrder) or code in not_found:
        return 0
    orders: list[OpenOrder] = eng.book(cmd.symbol).open_orders()
    [order] = [
        o
        for o in orders
        if o.account == cmd.account
        and (
            o.order_id == cmd.order_id if cmd.order_id else o.client_order_id == cmd.client_order_id
        )
    ]
    return order.side


def _run_case(eng: EngineLike, case: Case) -> None:
    for cmd in case.setup:
        assert eng.execute(cmd).status != OrderStatus.REJECTED, f"setup {cmd} rejected"
    before = {s.symbol: book_state(eng.book(s.symbol)) for s in DEFAULT_SYMBOLS}
    seqs = {s.symbol: eng.book(s.symbol).last_seq for s in DEFAULT_SYMBOLS}
    side = _found_side(eng, case.cmd, case.code)
    r = eng.execute(case.cmd)
    assert r == expected_reject(case.cmd, seqs[case.cmd.symbol] + 1, case.code, side)
    assert {s.symbol: book_state(eng.book(s.symbol)) for s in DEFAULT_SYMBOLS} == before
    seqs[case.cmd.symbol] += 1
    assert {s.symbol: eng.book(s.symbol).last_seq for s in DEFAULT_SYMBOLS} == seqs


@pytest.mark.parametrize("name", CASES)
def test_reject_changes_nothing_but_the_seq(eng: EngineLike, name: str) -> None:
    _run_case(eng, CASES[name])


@pytest.mark.parametrize("name", PRECEDENCE)
def test_first_failing_check_wins(eng: EngineLike, name: str) -> None:
    _run_case(eng, PRECEDENCE[name])


def test_every_reject_code_has_a_case() -> None:
    not_rejects = {C.NONE, C.UNKNOWN_SYMBOL, C.SELF_TRADE_PREVENTED}  # tested elsewhere
    assert {case.code for case in CASES.values()} == set(RejectCode) - not_rejects


def test_client_order_id_of_64_characters_is_accepted(eng: EngineLike) -> None:
    r = eng.execute(buy(100, 1, client_order_id="x" * 64))
    assert (r.status, r.client_order_id) == (OrderStatus.NEW, "x" * 64)


def test_enum_fields_given_as_plain_ints_are_read_by_value(eng: EngineLike) -> None:
    """The service edge passes proto ints. They are accepted by value (the reference's
    reading) and the book's records compare equal to the members. They are ints, not
    always members: the compiled engine stores int fields as machine ints."""
    r = eng.execute(PlaceOrder(S, "alice", 1, 5, 100, 1, 1, stp=3))
    assert (r.status, r.reject_code) == (OrderStatus.NEW, C.NONE)
    [o] = eng.book(S).open_orders()
    assert (o.side, o.stp) == (Side.BUY, StpMode.EXPIRE_MAKER)
    assert (OrderStatus(r.status), Side(o.side)) == (OrderStatus.NEW, Side.BUY)
