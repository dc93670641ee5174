"""api.validation: every shape rule, in both tiers, with the field path it names."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from api import limits
from api.validation import (
    Violation,
    validate_account,
    validate_batch,
    validate_command,
    validate_command_count,
    validate_symbol,
)
from matching.v1 import orders_pb2, shard_pb2, types_pb2

Command = orders_pb2.OrderCommand | shard_pb2.ShardCommand
Mutate = Callable[[Command], None]


def place(**fields: object) -> orders_pb2.OrderCommand:
    base: dict[str, object] = {
        "symbol": "BTC-USDT",
        "account": "acct-1",
        "side": types_pb2.SIDE_BUY,
        "order_type": types_pb2.ORDER_TYPE_LIMIT,
        "time_in_force": types_pb2.TIME_IN_FORCE_GTC,
        "price": 100,
        "quantity": 10,
        "stp_mode": types_pb2.STP_MODE_NONE,
        "client_order_id": "c-1",
    }
    base.update(fields)
    return orders_pb2.OrderCommand(correlation_id=1, place_order=orders_pb2.PlaceOrder(**base))  # type: ignore[arg-type]


def cancel(**fields: object) -> orders_pb2.OrderCommand:
    base: dict[str, object] = {"symbol": "BTC-USDT", "account": "acct-1", "order_id": 42}
    base.update(fields)
    return orders_pb2.OrderCommand(cancel_order=orders_pb2.CancelOrder(**base))  # type: ignore[arg-type]


def amend(**fields: object) -> orders_pb2.OrderCommand:
    base: dict[str, object] = {
        "symbol": "BTC-USDT",
        "account": "acct-1",
        "client_order_id": "c-1",
        "new_quantity": 5,
    }
    base.update(fields)
    return orders_pb2.OrderCommand(amend_order=orders_pb2.AmendOrder(**base))  # type: ignore[arg-type]


def mass_cancel(**fields: object) -> orders_pb2.OrderCommand:
    base: dict[str, object] = {"account": "acct-1"}
    base.update(fields)
    return orders_pb2.OrderCommand(mass_cancel=orders_pb2.MassCancel(**base))  # type: ignore[arg-type]


def set_status(**fields: object) -> shard_pb2.ShardCommand:
    base: dict[str, object] = {"symbol": "BTC-USDT", "status": types_pb2.SYMBOL_STATUS_HALTED}
    base.update(fields)
    return shard_pb2.ShardCommand(set_symbol_status=orders_pb2.SetSymbolStatus(**base))  # type: ignore[arg-type]


def with_deadline(cmd: orders_pb2.OrderCommand, ns: int) -> orders_pb2.OrderCommand:
    cmd.deadline_unix_nanos = ns
    return cmd


def fields_of(violations: list[Violation]) -> list[str]:
    return [v.field for v in violations]


WELL_FORMED: list[Command] = [
    place(),
    place(
        order_type=types_pb2.ORDER_TYPE_MARKET, price=0, time_in_force=types_pb2.TIME_IN_FORCE_IOC
    ),
    place(post_only=True),
    place(client_order_id=""),
    place(symbol="A"),
    place(symbol="A" * limits.SYMBOL_MAX_CHARS),
    place(symbol="ETH.USDT_2-X9"),
    place(account="a" * limits.ACCOUNT_MAX_BYTES),
    place(account="\U0001f600" * (limits.ACCOUNT_MAX_BYTES // 4)),  # exactly 64 UTF-8 bytes
    place(client_order_id="c" * limits.CLIENT_ORDER_ID_MAX_CHARS),
    cancel(),
    cancel(order_id=0, client_order_id="c-1"),
    cancel(order_id=42, client_order_id="c-1"),  # both: order_id wins (orders.proto)
    amend(),
    amend(new_price=105, new_quantity=0),
    mass_cancel(),
    mass_cancel(symbol="BTC-USDT", side=types_pb2.SIDE_SELL),
    set_status(),
    set_status(status=types_pb2.SYMBOL_STATUS_TRADING),
]


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("cmd", WELL_FORMED, ids=lambda c: str(c.WhichOneof("command")))
def test_well_formed_commands_pass(cmd: Command, strict: bool) -> None:
    assert validate_command(cmd, strict=strict) == []


# Default tier: malformed for every caller (the contract's MALFORMED_COMMAND cases).
MALFORMED: list[tuple[str, Command, str]] = [
    ("empty symbol", place(symbol=""), "place_order.symbol"),
    ("lower-case symbol", place(symbol="btc-usdt"), "place_order.symbol"),
    ("symbol too long", place(symbol="A" * 33), "place_order.symbol"),
    ("symbol with braces", place(symbol="{BTC}"), "place_order.symbol"),
    ("symbol with space", place(symbol="BTC USDT"), "place_order.symbol"),
    ("symbol with newline", place(symbol="BTC\n"), "place_order.symbol"),
    ("non-ASCII symbol", place(symbol="BTĆ"), "place_order.symbol"),
    ("account over 64 bytes", place(account="a" * 65), "place_order.account"),
    ("account over 64 UTF-8 bytes", place(account="\U0001f600" * 17), "place_order.account"),
    ("cancel bad symbol", cancel(symbol="x"), "cancel_order.symbol"),
    ("cancel account too long", cancel(account="a" * 65), "cancel_order.account"),
    ("amend bad symbol", amend(symbol=""), "amend_order.symbol"),
    ("amend account too long", amend(account="a" * 65), "amend_order.account"),
    ("mass cancel bad symbol", mass_cancel(symbol="btc"), "mass_cancel.symbol"),
    ("mass cancel no account", mass_cancel(account=""), "mass_cancel.account"),
    ("mass cancel long account", mass_cancel(account="a" * 65), "mass_cancel.account"),
    ("mass cancel unknown side", mass_cancel(side=7), "mass_cancel.side"),
    ("status unspecified", set_status(status=0), "set_symbol_status.status"),
    ("status unknown", set_status(status=9), "set_symbol_status.status"),
    ("status bad symbol", set_status(symbol=""), "set_symbol_status.symbol"),
    ("no command kind", orders_pb2.OrderCommand(correlation_id=3), "command"),
    ("no shard command kind", shard_pb2.ShardCommand(), "command"),
    ("negative deadline", with_deadline(place(), -1), "deadline_unix_nanos"),
    ("huge client order id", place(client_order_id="c" * 1_025), "place_order.client_order_id"),
    (
        "cancel huge client order id",
        cancel(order_id=0, client_order_id="c" * 1_025),
        "cancel_order.client_order_id",
    ),
    (
        "amend huge client order id",
        amend(client_order_id="c" * 1_025),
        "amend_order.client_order_id",
    ),
]


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize(
    ("cmd", "field"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_commands_name_the_field(cmd: Command, field: str, strict: bool) -> None:
    violations = validate_command(cmd, strict=strict)
    assert fields_of(violations) == [field]
    assert all(v.description for v in violations)


# Strict tier: the contract sends these to the engine (a REJECTED report with the code in
# the comment), so the default tier must let them through.
ENGINE_CODED: list[tuple[str, Command, str]] = [
    ("empty account / INVALID_ACCOUNT", place(account=""), "place_order.account"),
    ("side unspecified / INVALID_SIDE", place(side=0), "place_order.side"),
    ("side unknown / INVALID_SIDE", place(side=3), "place_order.side"),
    ("type unspecified", place(order_type=0), "place_order.order_type"),
    ("type unknown", place(order_type=3), "place_order.order_type"),
    ("tif unspecified", place(time_in_force=0), "place_order.time_in_force"),
    ("tif unknown", place(time_in_force=4), "place_order.time_in_force"),
    ("stp unspecified", place(stp_mode=0), "place_order.stp_mode"),
    ("stp unknown", place(stp_mode=5), "place_order.stp_mode"),
    ("zero quantity", place(quantity=0), "place_order.quantity"),
    ("negative quantity", place(quantity=-10), "place_order.quantity"),
    ("limit without price", place(price=0), "place_order.price"),
    ("negative price", place(price=-1), "place_order.price"),
    (
        "market with price",
        place(order_type=types_pb2.ORDER_TYPE_MARKET, price=5),
        "place_order.price",
    ),
    ("notional overflow", place(price=1 << 40, quantity=1 << 30), "place_order.quantity"),
    (
        "post-only IOC",
        place(post_only=True, time_in_force=types_pb2.TIME_IN_FORCE_IOC),
        "place_order.post_only",
    ),
    (
        "post-only market",
        place(post_only=True, order_type=types_pb2.ORDER_TYPE_MARKET, price=0),
        "place_order.post_only",
    ),
    ("client order id 65 chars", place(client_order_id="c" * 65), "place_order.client_order_id"),
    ("cancel no account", cancel(account=""), "cancel_order.account"),
    ("cancel no reference", cancel(order_id=0), "cancel_order.order_id"),
    ("cancel negative order id", cancel(order_id=-4), "cancel_order.order_id"),
    (
        "cancel long client id",
        cancel(order_id=0, client_order_id="c" * 65),
        "cancel_order.client_order_id",
    ),
    ("amend no account", amend(account=""), "amend_order.account"),
    ("amend no reference", amend(client_order_id=""), "amend_order.order_id"),
    ("amend negative order id", amend(order_id=-1), "amend_order.order_id"),
    ("amend negative price", amend(new_price=-1), "amend_order.new_price"),
    ("amend negative quantity", amend(new_quantity=-1), "amend_order.new_quantity"),
    ("amend nothing to change", amend(new_quantity=0), "amend_order.new_price"),
]


@pytest.mark.parametrize(
    ("cmd", "field"), [m[1:] for m in ENGINE_CODED], ids=[m[0] for m in ENGINE_CODED]
)
def test_engine_coded_problems_only_in_strict_tier(cmd: Command, field: str) -> None:
    assert validate_command(cmd) == []
    assert fields_of(validate_command(cmd, strict=True)) == [field]


def test_every_defined_enum_value_is_accepted() -> None:
    # Read from the descriptors: a value added to the contract must not become malformed.
    for side in types_pb2.Side.values():
        for tif in types_pb2.TimeInForce.values():
            for stp in types_pb2.StpMode.values():
                if 0 in (side, tif, stp):
                    continue
                cmd = place(side=side, time_in_force=tif, stp_mode=stp)
                assert validate_command(cmd, strict=True) == [], (side, tif, stp)
    for status in types_pb2.SymbolStatus.values():
        expected = [] if status else ["set_symbol_status.status"]
        assert fields_of(validate_command(set_status(status=status))) == expected


def test_several_problems_are_all_reported_in_field_order() -> None:
    cmd = place(symbol="", side=0, quantity=0, price=0)
    assert fields_of(validate_command(cmd, strict=True)) == [
        "place_order.symbol",
        "place_order.side",
        "place_order.quantity",
        "place_order.price",
    ]


def test_prefix_is_prepended() -> None:
    assert fields_of(validate_command(place(symbol=""), "order.")) == ["order.place_order.symbol"]


def test_set_symbol_status_is_shard_only() -> None:
    # OrderCommand has no set_symbol_status; a ShardCommand carrying one is fine.
    assert "set_symbol_status" not in orders_pb2.OrderCommand.DESCRIPTOR.fields_by_name
    assert validate_command(set_status()) == []


def test_description_never_echoes_the_value() -> None:
    huge = "Z" * 10_000
    (violation,) = validate_command(place(symbol=huge.lower()))
    assert huge.lower() not in violation.description
    assert len(violation.description) < 100


def test_command_count_limit() -> None:
    assert validate_command_count(limits.MAX_COMMANDS_PER_MESSAGE) == []
    assert fields_of(validate_command_count(limits.MAX_COMMANDS_PER_MESSAGE + 1)) == ["commands"]


def test_batch_paths_and_count() -> None:
    good = place()
    bad = place(quantity=0, symbol="")
    batch = [good, good, good, bad]
    assert fields_of(validate_batch(batch)) == ["commands[3].place_order.symbol"]
    assert fields_of(validate_batch(batch, strict=True)) == [
        "commands[3].place_order.symbol",
        "commands[3].place_order.quantity",
    ]
    too_many = [good] * (limits.MAX_COMMANDS_PER_MESSAGE + 1)
    assert fields_of(validate_batch(too_many)) == ["commands"]
    assert validate_batch([good] * limits.MAX_COMMANDS_PER_MESSAGE) == []


def test_batch_of_shard_commands() -> None:
    cmds = [shard_pb2.ShardCommand(), set_status(status=0)]
    assert fields_of(validate_batch(cmds)) == [
        "commands[0].command",
        "commands[1].set_symbol_status.status",
    ]


@pytest.mark.parametrize(
    ("value", "ok"),
    [("BTC-USDT", True), ("", False), ("A" * 32, True), ("A" * 33, False), ("a", False)],
)
def test_validate_symbol(value: str, ok: bool) -> None:
    assert (validate_symbol(value, "symbols[2]") == []) is ok
    if not ok:
        assert fields_of(validate_symbol(value, "symbols[2]")) == ["symbols[2]"]


@pytest.mark.parametrize(("value", "ok"), [("acct", True), ("", False), ("a" * 65, False)])
def test_validate_account(value: str, ok: bool) -> None:
    found = validate_account(value, "subscribe[0].account")
    assert fields_of(found) == ([] if ok else ["subscribe[0].account"])


def test_limits_agree_with_the_engine() -> None:
    from shard.engine import INT64_MAX, ORDER_ID_SHIFT
    from shard.engine.validation import MAX_CLIENT_ORDER_ID

    assert limits.CLIENT_ORDER_ID_MAX_CHARS == MAX_CLIENT_ORDER_ID
    assert limits.INT64_MAX == INT64_MAX
    # The largest symbol id still gives a positive int64 order id.
    assert (limits.SYMBOL_ID_LIMIT - 1) << ORDER_ID_SHIFT | ((1 << ORDER_ID_SHIFT) - 1) == INT64_MAX
