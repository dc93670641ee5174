"""api.request_validation: request envelopes of the gateway, shard and admin services."""

from __future__ import annotations

import pytest

from api import limits
from api.request_validation import (
    validate_amend_order_request,
    validate_cancel_order_request,
    validate_execute_request,
    validate_get_order_book_request,
    validate_get_order_request,
    validate_mass_cancel_request,
    validate_stream_market_data_request,
    validate_submit_batch_request,
    validate_submit_order_request,
    validate_symbol_spec,
    validate_trade_request,
)
from api.validation import Violation, validate_command
from matching.v1 import gateway_pb2, orders_pb2, shard_pb2, types_pb2


def fields_of(violations: list[Violation]) -> list[str]:
    return [v.field for v in violations]


PLACE = orders_pb2.PlaceOrder(
    symbol="BTC-USDT",
    account="a",
    side=types_pb2.SIDE_BUY,
    order_type=types_pb2.ORDER_TYPE_LIMIT,
    time_in_force=types_pb2.TIME_IN_FORCE_GTC,
    price=100,
    quantity=1,
    stp_mode=types_pb2.STP_MODE_NONE,
)


def test_unary_requests_need_their_command() -> None:
    assert fields_of(validate_submit_order_request(gateway_pb2.SubmitOrderRequest())) == ["order"]
    assert fields_of(validate_cancel_order_request(gateway_pb2.CancelOrderRequest())) == ["cancel"]
    assert fields_of(validate_amend_order_request(gateway_pb2.AmendOrderRequest())) == ["amend"]
    empty_mass_cancel = gateway_pb2.MassCancelRequest()
    assert fields_of(validate_mass_cancel_request(empty_mass_cancel)) == ["mass_cancel"]


def test_unary_request_paths_start_at_the_request() -> None:
    req = gateway_pb2.SubmitOrderRequest(order=PLACE)
    assert validate_submit_order_request(req, strict=True) == []
    req.order.symbol = "bad"
    req.order.quantity = 0
    assert fields_of(validate_submit_order_request(req)) == ["order.symbol"]
    assert fields_of(validate_submit_order_request(req, strict=True)) == [
        "order.symbol",
        "order.quantity",
    ]
    cancel = gateway_pb2.CancelOrderRequest(cancel=orders_pb2.CancelOrder(symbol="X", account="a"))
    assert validate_cancel_order_request(cancel) == []
    assert fields_of(validate_cancel_order_request(cancel, strict=True)) == ["cancel.order_id"]
    amend = gateway_pb2.AmendOrderRequest(amend=orders_pb2.AmendOrder(symbol="x", order_id=1))
    assert fields_of(validate_amend_order_request(amend)) == ["amend.symbol"]
    mass = gateway_pb2.MassCancelRequest(mass_cancel=orders_pb2.MassCancel(account=""))
    assert fields_of(validate_mass_cancel_request(mass)) == ["mass_cancel.account"]


def test_submit_batch_checks_only_the_count() -> None:
    bad = orders_pb2.OrderCommand()  # per-command problems become CommandErrors, not this
    req = gateway_pb2.SubmitBatchRequest(commands=[bad] * limits.MAX_COMMANDS_PER_MESSAGE)
    assert validate_submit_batch_request(req) == []
    req.commands.append(bad)
    assert fields_of(validate_submit_batch_request(req)) == ["commands"]


def test_trade_request_options_only_first() -> None:
    opts = gateway_pb2.TradeStreamOptions(cancel_on_disconnect=True, accounts=["a", "b"])
    req = gateway_pb2.TradeRequest(options=opts)
    assert validate_trade_request(req, first_message=True) == []
    assert fields_of(validate_trade_request(req, first_message=False)) == ["options"]
    assert validate_trade_request(gateway_pb2.TradeRequest(), first_message=False) == []


def test_trade_request_accounts_and_count() -> None:
    opts = gateway_pb2.TradeStreamOptions(accounts=["a", "", "x" * 65])
    cmds = [orders_pb2.OrderCommand()] * (limits.MAX_COMMANDS_PER_MESSAGE + 1)
    req = gateway_pb2.TradeRequest(options=opts, commands=cmds)
    assert fields_of(validate_trade_request(req, first_message=True)) == [
        "commands",
        "options.accounts[1]",
        "options.accounts[2]",
    ]


def test_trade_request_accounts_are_bounded_in_number() -> None:
    """Each account is subscribed on every shard link, and all of them go again in one
    message when a link reconnects: past the limit the stream fails, nothing subscribed."""
    most = [f"a{i}" for i in range(limits.STREAM_MAX_ACCOUNTS)]
    at_most = gateway_pb2.TradeStreamOptions(accounts=most)
    assert (
        validate_trade_request(gateway_pb2.TradeRequest(options=at_most), first_message=True) == []
    )
    over = gateway_pb2.TradeStreamOptions(accounts=[*most, "one-more"])
    request = gateway_pb2.TradeRequest(options=over)
    assert fields_of(validate_trade_request(request, first_message=True)) == ["options.accounts"]


def test_execute_request_rules() -> None:
    cmd = shard_pb2.ShardCommand(place_order=PLACE)
    good = shard_pb2.ExecuteRequest(
        options=shard_pb2.ExecuteStreamOptions(router_id="r1"),
        batch_id=1,
        commands=[cmd],
        subscribe=[shard_pb2.AccountSubscription(account="a", cancel_on_disconnect=True)],
        unsubscribe_accounts=["b"],
    )
    assert validate_execute_request(good, first_message=True) == []
    assert fields_of(validate_execute_request(good, first_message=False)) == ["options"]
    bad = shard_pb2.ExecuteRequest(
        batch_id=0,
        commands=[cmd],
        subscribe=[shard_pb2.AccountSubscription(account="")],
        unsubscribe_accounts=["ok", "y" * 65],
    )
    assert fields_of(validate_execute_request(bad, first_message=False)) == [
        "batch_id",
        "subscribe[0].account",
        "unsubscribe_accounts[1]",
    ]
    # A message with subscriptions only carries no batch, so batch_id 0 is right there.
    only_subs = shard_pb2.ExecuteRequest(subscribe=[shard_pb2.AccountSubscription(account="a")])
    assert validate_execute_request(only_subs, first_message=False) == []
    too_many = shard_pb2.ExecuteRequest(batch_id=2, commands=[cmd] * 1001)
    assert fields_of(validate_execute_request(too_many, first_message=False)) == ["commands"]


@pytest.mark.parametrize(
    ("req", "fields"),
    [
        (gateway_pb2.GetOrderRequest(symbol="BTC-USDT", account="a", order_id=7), []),
        (gateway_pb2.GetOrderRequest(symbol="BTC-USDT", account="a", client_order_id="c"), []),
        (gateway_pb2.GetOrderRequest(symbol="BTC-USDT", account="a"), ["order_id"]),
        (gateway_pb2.GetOrderRequest(symbol="", account="a", order_id=1), ["symbol"]),
        (gateway_pb2.GetOrderRequest(symbol="BTC-USDT", order_id=1), ["account"]),
        (gateway_pb2.GetOrderRequest(symbol="BTC-USDT", account="a", order_id=-1), ["order_id"]),
        (
            gateway_pb2.GetOrderRequest(symbol="BTC-USDT", account="a", client_order_id="c" * 65),
            ["client_order_id"],
        ),
    ],
)
def test_get_order_request(req: gateway_pb2.GetOrderRequest, fields: list[str]) -> None:
    assert fields_of(validate_get_order_request(req)) == fields


def test_get_order_book_request() -> None:
    assert validate_get_order_book_request(gateway_pb2.GetOrderBookRequest(symbol="ETH-USDT")) == []
    bad = gateway_pb2.GetOrderBookRequest(symbol="eth")
    assert fields_of(validate_get_order_book_request(bad)) == ["symbol"]


def test_stream_market_data_request() -> None:
    def req(symbols: list[str]) -> gateway_pb2.StreamMarketDataRequest:
        return gateway_pb2.StreamMarketDataRequest(symbols=symbols)

    assert validate_stream_market_data_request(req(["A"] * 100)) == []
    assert fields_of(validate_stream_market_data_request(req([]))) == ["symbols"]
    assert fields_of(validate_stream_market_data_request(req(["A"] * 101))) == ["symbols"]
    assert fields_of(validate_stream_market_data_request(req(["A", "b"]))) == ["symbols[1]"]


def spec(**fields: int | str) -> types_pb2.SymbolSpec:
    base: dict[str, int | str] = {
        "symbol": "BTC-USDT",
        "symbol_id": 0,
        "tick_size": 1,
        "lot_size": 10,
        "min_quantity": 10,
        "max_quantity": 1000,
    }
    base.update(fields)
    return types_pb2.SymbolSpec(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({}, []),
        ({"symbol_id": (1 << 23) - 1, "status": types_pb2.SYMBOL_STATUS_HALTED}, []),
        ({"symbol": "btc"}, ["spec.symbol"]),
        ({"symbol_id": 1 << 23}, ["spec.symbol_id"]),
        ({"symbol_id": -1}, ["spec.symbol_id"]),
        ({"tick_size": 0}, ["spec.tick_size"]),
        ({"lot_size": 0, "min_quantity": 1}, ["spec.lot_size"]),
        ({"min_quantity": 9}, ["spec.min_quantity"]),
        ({"max_quantity": 9, "min_quantity": 10}, ["spec.max_quantity"]),
        ({"status": 7}, ["spec.status"]),
    ],
)
def test_symbol_spec(changes: dict[str, int | str], fields: list[str]) -> None:
    assert fields_of(validate_symbol_spec(spec(**changes))) == fields


def test_only_routers_send_a_cancel_on_disconnect() -> None:
    flagged = orders_pb2.MassCancel(account="a", on_disconnect=True)
    request = gateway_pb2.MassCancelRequest(mass_cancel=flagged)
    assert fields_of(validate_mass_cancel_request(request)) == ["mass_cancel.on_disconnect"]
    from_client = orders_pb2.OrderCommand(mass_cancel=flagged)
    assert fields_of(validate_command(from_client)) == ["mass_cancel.on_disconnect"]
    assert validate_command(shard_pb2.ShardCommand(mass_cancel=flagged)) == []
