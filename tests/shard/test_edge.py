"""shard.edge: protobuf <-> domain conversion, checked against the proto descriptors and
against reports from a real engine."""

from __future__ import annotations

from enum import IntEnum

import pytest
from google.protobuf.descriptor import EnumDescriptor

from api.validation import validate_command
from matching.v1 import orders_pb2, shard_pb2, types_pb2
from shard import edge
from shard.engine import (
    AmendOrder,
    CancelOrder,
    Fill,
    MassCancel,
    MatchingEngine,
    OrderStatus,
    OrderType,
    PlaceOrder,
    RejectCode,
    Report,
    SetSymbolStatus,
    Side,
    StpMode,
    SymbolSpec,
    SymbolStatus,
    TimeInForce,
)

SYMBOL = "BTC-USDT"
T = 1_700_000_000_123_456_789
BUY, SELL = types_pb2.SIDE_BUY, types_pb2.SIDE_SELL

# --- enum numbers -------------------------------------------------------------------------

ENUM_PAIRS: list[tuple[EnumDescriptor, type[IntEnum], str]] = [
    (types_pb2.Side.DESCRIPTOR, Side, "SIDE_"),
    (types_pb2.OrderType.DESCRIPTOR, OrderType, "ORDER_TYPE_"),
    (types_pb2.TimeInForce.DESCRIPTOR, TimeInForce, "TIME_IN_FORCE_"),
    (types_pb2.StpMode.DESCRIPTOR, StpMode, "STP_MODE_"),
    (types_pb2.OrderStatus.DESCRIPTOR, OrderStatus, "ORDER_STATUS_"),
    (types_pb2.SymbolStatus.DESCRIPTOR, SymbolStatus, "SYMBOL_STATUS_"),
]


@pytest.mark.parametrize(("proto", "domain", "prefix"), ENUM_PAIRS, ids=lambda p: str(p)[:20])
def test_enum_numbers_equal_domain(
    proto: EnumDescriptor, domain: type[IntEnum], prefix: str
) -> None:
    # Every value both ways, by name: an added, renamed or renumbered value fails.
    from_proto = {v.name.removeprefix(prefix): v.number for v in proto.values if v.number}
    assert from_proto == {m.name: m.value for m in domain}
    assert proto.values_by_number[0].name == prefix + "UNSPECIFIED"


def test_reject_code_numbers_equal_domain() -> None:
    proto = types_pb2.RejectCode.DESCRIPTOR
    engine_part = {
        v.name.removeprefix("REJECT_CODE_"): v.number for v in proto.values if v.number < 100
    }
    engine_part["NONE"] = engine_part.pop("UNSPECIFIED")  # 0 = accepted (0002)
    assert engine_part == {m.name: m.value for m in RejectCode}


# --- inbound ------------------------------------------------------------------------------


def pb_place(**fields: object) -> orders_pb2.PlaceOrder:
    base: dict[str, object] = {
        "symbol": SYMBOL,
        "account": "alice",
        "side": SELL,
        "order_type": types_pb2.ORDER_TYPE_LIMIT,
        "time_in_force": types_pb2.TIME_IN_FORCE_IOC,
        "price": 101,
        "quantity": 7,
        "post_only": False,
        "stp_mode": types_pb2.STP_MODE_EXPIRE_BOTH,
        "client_order_id": "q-1",
    }
    base.update(fields)
    return orders_pb2.PlaceOrder(**base)  # type: ignore[arg-type]


def test_every_command_field_is_converted() -> None:
    # Drift guard: a field added to a proto command must be handled (and this list updated).
    names = {
        "PlaceOrder": set(PlaceOrder._fields) - {"stp"} | {"stp_mode"},
        "CancelOrder": set(CancelOrder._fields),
        "AmendOrder": set(AmendOrder._fields),
        # on_disconnect is not the engine's: shard.results reads it (system cancels).
        "MassCancel": set(MassCancel._fields) | {"on_disconnect"},
        "SetSymbolStatus": set(SetSymbolStatus._fields),
    }
    for message, fields in names.items():
        assert set(orders_pb2.DESCRIPTOR.message_types_by_name[message].fields_by_name) == fields


@pytest.mark.parametrize("wrapper", [orders_pb2.OrderCommand, shard_pb2.ShardCommand])
def test_place_round_trip(wrapper: type[orders_pb2.OrderCommand]) -> None:
    cmd = edge.command_from_pb(wrapper(place_order=pb_place(post_only=True)))
    assert cmd == PlaceOrder(
        symbol=SYMBOL,
        account="alice",
        side=Side.SELL,
        quantity=7,
        price=101,
        order_type=OrderType.LIMIT,
        time_in_force=TimeInForce.IOC,
        post_only=True,
        stp=StpMode.EXPIRE_BOTH,
        client_order_id="q-1",
    )
    assert isinstance(cmd, PlaceOrder)
    # Plain ints, no IntEnum construction on the hot path.
    assert {type(v) for v in (cmd.side, cmd.order_type, cmd.time_in_force, cmd.stp)} == {int}


def test_cancel_amend_status_round_trip() -> None:
    cancel = orders_pb2.CancelOrder(symbol=SYMBOL, account="a", order_id=9, client_order_id="c")
    assert edge.command_from_pb(orders_pb2.OrderCommand(cancel_order=cancel)) == CancelOrder(
        symbol=SYMBOL, account="a", order_id=9, client_order_id="c"
    )
    amend = orders_pb2.AmendOrder(
        symbol=SYMBOL, account="a", client_order_id="c", new_price=5, new_quantity=30
    )
    assert edge.command_from_pb(orders_pb2.OrderCommand(amend_order=amend)) == AmendOrder(
        symbol=SYMBOL, account="a", order_id=0, client_order_id="c", new_price=5, new_quantity=30
    )
    halt = orders_pb2.SetSymbolStatus(symbol=SYMBOL, status=types_pb2.SYMBOL_STATUS_HALTED)
    converted = edge.command_from_pb(shard_pb2.ShardCommand(set_symbol_status=halt))
    assert converted == SetSymbolStatus(symbol=SYMBOL, status=SymbolStatus.HALTED)


@pytest.mark.parametrize(
    ("side", "expected"), [(types_pb2.SIDE_UNSPECIFIED, None), (BUY, Side.BUY), (SELL, Side.SELL)]
)
def test_mass_cancel_round_trip(side: types_pb2.Side.ValueType, expected: Side | None) -> None:
    one = orders_pb2.MassCancel(account="a", symbol=SYMBOL, side=side)
    assert edge.command_from_pb(orders_pb2.OrderCommand(mass_cancel=one)) == MassCancel(
        symbol=SYMBOL, account="a", side=expected
    )
    every = edge.command_from_pb(
        orders_pb2.OrderCommand(mass_cancel=orders_pb2.MassCancel(account="a", side=side))
    )
    assert every == edge.MassCancelAllSymbols(account="a", side=expected)
    assert isinstance(every, edge.MassCancelAllSymbols)
    assert edge.mass_cancel_symbols(every, ["ETH-USDT", SYMBOL]) == [
        MassCancel(symbol=SYMBOL, account="a", side=expected),
        MassCancel(symbol="ETH-USDT", account="a", side=expected),
    ]


def test_command_without_kind_raises() -> None:
    with pytest.raises(ValueError, match="no command kind"):
        edge.command_from_pb(shard_pb2.ShardCommand(correlation_id=5))


def test_unspecified_enums_reach_the_engine_as_its_reject_codes() -> None:
    # 0002: UNSPECIFIED side/type/tif/stp are not malformed; the engine rejects them.
    engine = new_engine()
    for field, code in [
        ("side", RejectCode.INVALID_SIDE),
        ("order_type", RejectCode.INVALID_ORDER_TYPE),
        ("time_in_force", RejectCode.INVALID_TIME_IN_FORCE),
        ("stp_mode", RejectCode.INVALID_STP_MODE),
    ]:
        msg = orders_pb2.OrderCommand(place_order=pb_place(**{field: 0}))
        assert validate_command(msg) == []
        report = engine.execute(edge.place_from_pb(msg.place_order))
        assert (report.status, report.reject_code) == (OrderStatus.REJECTED, code)


# --- outbound -----------------------------------------------------------------------------


def new_engine() -> MatchingEngine:
    engine = MatchingEngine()
    engine.add_symbol(SymbolSpec(SYMBOL, 1))
    return engine


def run(engine: MatchingEngine, **fields: object) -> Report:
    return engine.execute(edge.place_from_pb(pb_place(**fields)))


def assert_report_matches(msg: orders_pb2.ExecutionReport, report: Report) -> None:
    got: tuple[object, ...] = (
        msg.symbol,
        msg.seq,
        msg.order_id,
        msg.client_order_id,
        msg.account,
        msg.status,
        msg.reject_code,
        msg.price,
        msg.cum_qty,
        msg.leaves_qty,
        msg.priority,
        tuple(msg.expired_order_ids),
        msg.side,
    )
    assert got == (*report[:11], report.expired, report.side)


def test_every_report_field_is_known() -> None:
    # Drift guard: a new ExecutionReport / Fill field must be filled by the edge or listed.
    report_fields = set(orders_pb2.ExecutionReport.DESCRIPTOR.fields_by_name)
    assert report_fields == set(Report._fields) - {"expired"} | {
        "expired_order_ids",
        "kind",
        "transact_time_unix_nanos",
        "replayed",
    }
    fill_fields = set(orders_pb2.Fill.DESCRIPTOR.fields_by_name)
    assert fill_fields == set(Fill._fields) - {"maker_leaves", "maker_cum"} | {
        "maker_leaves_qty",
        "match_index",
    }


ER = orders_pb2.ExecutionReport
PB_FILL = orders_pb2.Fill


def test_taker_report_with_fills() -> None:
    engine = new_engine()
    m1 = run(engine, account="m1", client_order_id="a1", time_in_force=1, price=100, quantity=4)
    m2 = run(engine, account="m2", client_order_id="a2", time_in_force=1, price=101, quantity=10)
    report = run(engine, account="t", side=BUY, time_in_force=1, price=101, quantity=9)
    msg = edge.report_to_pb(report, transact_time_unix_nanos=T)
    fills = [
        PB_FILL(maker_order_id=m1.order_id, maker_account="m1", maker_client_order_id="a1",
                taker_order_id=report.order_id, price=100, quantity=4, match_index=0),
        PB_FILL(maker_order_id=m2.order_id, maker_account="m2", maker_client_order_id="a2",
                taker_order_id=report.order_id, price=101, quantity=5, maker_leaves_qty=5,
                match_index=1),
    ]  # fmt: skip
    assert msg == ER(
        symbol=SYMBOL, seq=3, order_id=report.order_id, client_order_id="q-1", account="t",
        status=types_pb2.ORDER_STATUS_FILLED, price=101, cum_qty=9, fills=fills, side=BUY,
        kind=orders_pb2.REPORT_KIND_COMMAND, transact_time_unix_nanos=T,
    )  # fmt: skip
    assert_report_matches(msg, report)
    assert edge.fills_to_pb(report.fills) == fills
    assert ER.FromString(msg.SerializeToString()) == msg


def merged(base: orders_pb2.ExecutionReport, extra: orders_pb2.ExecutionReport) -> ER:
    out = ER()
    out.CopyFrom(base)
    out.MergeFrom(extra)
    return out


def test_maker_fill_reports() -> None:
    engine = new_engine()
    m1 = run(engine, account="m1", client_order_id="a1", time_in_force=1, price=100, quantity=4)
    m2 = run(engine, account="m2", client_order_id="a2", time_in_force=1, price=101, quantity=10)
    run(engine, account="t", side=BUY, time_in_force=2, price=101, quantity=2, client_order_id="")
    report = run(engine, account="t", side=BUY, time_in_force=2, price=101, quantity=6)
    details = {m2.order_id: edge.MakerDetail("ignored", 0, 0, priority=m2.priority)}
    msgs = edge.maker_fill_reports(report, transact_time_unix_nanos=T,
                                   details=details)  # fmt: skip
    common = ER(symbol=SYMBOL, seq=report.seq, side=SELL, transact_time_unix_nanos=T,
                kind=orders_pb2.REPORT_KIND_MAKER_FILL)  # fmt: skip
    taker_fills = edge.fills_to_pb(report.fills)
    assert msgs == [
        # m1 had 2 filled by the earlier taker: cum 4 = 2 + 2 comes from Fill.maker_cum.
        merged(common, ER(order_id=m1.order_id, client_order_id="a1", account="m1", cum_qty=4,
                          price=100, status=types_pb2.ORDER_STATUS_FILLED,
                          fills=[taker_fills[0]])),
        merged(common, ER(order_id=m2.order_id, client_order_id="a2", account="m2", cum_qty=4,
                          leaves_qty=6, price=101, priority=m2.priority,
                          status=types_pb2.ORDER_STATUS_PARTIALLY_FILLED,
                          fills=[taker_fills[1]])),
    ]  # fmt: skip
    assert [m.fills[0].match_index for m in msgs] == [0, 1]
    only_m2 = edge.maker_fill_reports(report, transact_time_unix_nanos=T,
                                      accounts={"m2"})  # fmt: skip
    assert [(m.account, m.priority) for m in only_m2] == [("m2", 0)]  # no details: 0 = unknown


def test_stp_expired_maker_reports() -> None:
    engine = new_engine()
    mine = run(engine, account="a", client_order_id="own", time_in_force=1, price=100, quantity=3)
    other = run(engine, account="b", time_in_force=1, price=100, quantity=5)
    report = run(engine, account="a", side=BUY, price=100, quantity=5,
                 stp_mode=types_pb2.STP_MODE_EXPIRE_MAKER)  # fmt: skip
    assert report.expired == (mine.order_id,)
    msg = edge.report_to_pb(report, transact_time_unix_nanos=T)
    assert list(msg.expired_order_ids) == [mine.order_id]
    assert [f.maker_order_id for f in msg.fills] == [other.order_id]
    expected = ER(
        symbol=SYMBOL, seq=report.seq, order_id=mine.order_id, account="a",
        status=types_pb2.ORDER_STATUS_EXPIRED,
        reject_code=types_pb2.REJECT_CODE_SELF_TRADE_PREVENTED, side=SELL,
        kind=orders_pb2.REPORT_KIND_MAKER_EXPIRED, transact_time_unix_nanos=T,
    )  # fmt: skip
    bare = edge.maker_expired_reports(report, transact_time_unix_nanos=T)
    assert bare == [expected]  # no details: client order id, price, cum unknown (""/0)
    details = {mine.order_id: edge.MakerDetail("own", 100, 0, 0)}
    full = edge.maker_expired_reports(report, transact_time_unix_nanos=T,
                                      details=details)  # fmt: skip
    expected.client_order_id, expected.price = "own", 100
    assert full == [expected]
    other_account = edge.maker_expired_reports(report, transact_time_unix_nanos=T, accounts={"b"})
    assert other_account == []


def test_mass_cancel_report_and_system_cancel() -> None:
    engine = new_engine()
    ids = [
        run(
            engine, account="a", client_order_id=f"c{i}", time_in_force=1, price=100 + i, quantity=1
        ).order_id
        for i in range(3)
    ]
    report = engine.execute(MassCancel(SYMBOL, "a"))
    msg = edge.report_to_pb(
        report, transact_time_unix_nanos=T, kind=orders_pb2.REPORT_KIND_SYSTEM_CANCEL
    )
    assert_report_matches(msg, report)
    assert list(msg.expired_order_ids) == ids
    assert msg.kind == orders_pb2.REPORT_KIND_SYSTEM_CANCEL
    assert (msg.side, msg.status) == (types_pb2.SIDE_UNSPECIFIED, types_pb2.ORDER_STATUS_CANCELED)
    # A mass cancel's expired orders are its subject, not STP victims.
    assert edge.maker_expired_reports(report, transact_time_unix_nanos=T) == []


def test_rejected_and_replayed_report() -> None:
    engine = new_engine()
    report = run(engine, quantity=0, price=55, client_order_id="r")
    assert report.reject_code == RejectCode.INVALID_QUANTITY
    msg = edge.report_to_pb(report, transact_time_unix_nanos=T, replayed=True)
    assert_report_matches(msg, report)
    assert (msg.status, msg.reject_code) == (
        types_pb2.ORDER_STATUS_REJECTED,
        types_pb2.REJECT_CODE_INVALID_QUANTITY,
    )
    assert (msg.order_id, msg.price, msg.replayed) == (0, 55, True)


def test_resting_order_report() -> None:
    engine = new_engine()
    report = run(engine, time_in_force=1, quantity=3)
    msg = edge.report_to_pb(report, transact_time_unix_nanos=T)
    assert_report_matches(msg, report)
    assert msg.status == types_pb2.ORDER_STATUS_NEW
    assert (msg.leaves_qty, msg.priority, len(msg.fills)) == (3, report.seq, 0)


def test_cancel_and_amend_reports_carry_the_orders_side() -> None:
    # The wire contract: ExecutionReport.side is the order's side, also when the command
    # (a cancel or amend) does not name it; SIDE_UNSPECIFIED if the order was not found.
    engine = new_engine()
    order = run(engine, side=BUY, time_in_force=1, price=100, quantity=3)
    amended = engine.execute(AmendOrder(SYMBOL, "alice", order.order_id, new_quantity=2))
    cancelled = engine.execute(CancelOrder(SYMBOL, "alice", order.order_id))
    unknown = engine.execute(CancelOrder(SYMBOL, "alice", order.order_id))
    assert unknown.reject_code == RejectCode.UNKNOWN_ORDER
    sides = [
        edge.report_to_pb(r, transact_time_unix_nanos=T).side
        for r in (order, amended, cancelled, unknown)
    ]
    assert sides == [BUY, BUY, BUY, types_pb2.SIDE_UNSPECIFIED]


def test_maker_reports_of_a_crossing_amend_are_on_the_opposite_side() -> None:
    engine = new_engine()
    maker = run(engine, account="m", side=SELL, time_in_force=1, price=101, quantity=2)
    bid = run(engine, account="t", side=BUY, time_in_force=1, price=99, quantity=5)
    amend = engine.execute(AmendOrder(SYMBOL, "t", bid.order_id, new_price=101))
    assert [f.maker_order_id for f in amend.fills] == [maker.order_id]
    assert edge.report_to_pb(amend, transact_time_unix_nanos=T).side == BUY
    [maker_msg] = edge.maker_fill_reports(amend, transact_time_unix_nanos=T)
    assert (maker_msg.order_id, maker_msg.side) == (maker.order_id, SELL)
