"""router.wire: pre-encoded Execute messages parse as the shard will parse them."""

from __future__ import annotations

import pytest

from api.protowire import varint
from matching.v1 import orders_pb2, shard_pb2
from router.wire import control_requests, deadline_field, encode, execute_request, frame


@pytest.mark.parametrize(
    "n",
    [
        0,
        1,
        127,
        128,
        300,
        0x3FFF,
        0x4000,
        0x1FFFFF,
        0x200000,
        1 << 35,
        (1 << 63) - 1,
        (1 << 64) - 1,
    ],
)
def test_varint_matches_protobuf(n: int) -> None:
    expected = shard_pb2.ExecuteRequest(batch_id=n).SerializeToString()
    assert b"\x10" + varint(n) == (expected or b"\x10\x00")


def _place(symbol: str, correlation_id: int = 0, deadline: int = 0) -> orders_pb2.OrderCommand:
    return orders_pb2.OrderCommand(
        correlation_id=correlation_id,
        deadline_unix_nanos=deadline,
        place_order=orders_pb2.PlaceOrder(symbol=symbol, account="a", quantity=5, price=7),
    )


def test_router_ids_and_deadlines_override_the_callers() -> None:
    commands = [_place("BTC-USDT", 77, 123), _place("ETH-USDT"), _place("X", 1 << 60, 1 << 62)]
    framed = [frame(encode(c), 1000 + i, deadline_field(5_000 + i)) for i, c in enumerate(commands)]
    request = shard_pb2.ExecuteRequest.FromString(execute_request(42, framed))
    assert request.batch_id == 42
    assert [c.correlation_id for c in request.commands] == [1000, 1001, 1002]
    assert [c.deadline_unix_nanos for c in request.commands] == [5000, 5001, 5002]
    for original, parsed in zip(commands, request.commands, strict=True):
        assert parsed.place_order == original.place_order
        assert parsed.WhichOneof("command") == "place_order"


def test_every_command_kind_survives() -> None:
    kinds = [
        orders_pb2.OrderCommand(cancel_order=orders_pb2.CancelOrder(symbol="B", order_id=9)),
        orders_pb2.OrderCommand(amend_order=orders_pb2.AmendOrder(symbol="B", new_price=3)),
        orders_pb2.OrderCommand(mass_cancel=orders_pb2.MassCancel(account="m", side=2)),
    ]
    request = shard_pb2.ExecuteRequest.FromString(
        execute_request(
            1, [frame(encode(c), i + 1, deadline_field(1)) for i, c in enumerate(kinds)]
        )
    )
    for original, parsed in zip(kinds, request.commands, strict=True):
        kind = original.WhichOneof("command")
        assert parsed.WhichOneof("command") == kind
        assert getattr(parsed, kind) == getattr(original, kind)


def test_control_requests() -> None:
    sub = shard_pb2.AccountSubscription(account="mm", cancel_on_disconnect=True)
    (message,) = control_requests(router_id="r1", subscribe=[sub], unsubscribe=["old"])
    parsed = shard_pb2.ExecuteRequest.FromString(message)
    assert parsed.options.router_id == "r1"
    assert list(parsed.subscribe) == [sub]
    assert list(parsed.unsubscribe_accounts) == ["old"]
    assert not parsed.commands and parsed.batch_id == 0
    assert control_requests() == []
    (options,) = control_requests(router_id="r1")
    assert shard_pb2.ExecuteRequest.FromString(options).options.router_id == "r1"


def test_control_requests_come_in_chunks_with_the_router_id_on_the_first() -> None:
    subs = [shard_pb2.AccountSubscription(account=f"a{i}") for i in range(3)]
    messages = control_requests(router_id="r1", subscribe=subs, unsubscribe=["x", "y"], chunk=2)
    parsed = [shard_pb2.ExecuteRequest.FromString(m) for m in messages]
    assert [([s.account for s in p.subscribe], list(p.unsubscribe_accounts)) for p in parsed] == [
        (["a0", "a1"], []),
        (["a2"], ["x"]),
        ([], ["y"]),
    ]
    assert [p.options.router_id for p in parsed] == ["r1", "", ""]
