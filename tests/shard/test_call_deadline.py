"""A shard bounds a unary command by its call's deadline, however far (api/deadlines.py)."""

from __future__ import annotations

from typing import Any, cast

from api.limits import INT64_MAX
from matching.v1 import orders_pb2
from shard.gateway import _bound_by_call_deadline
from tests.api.test_deadlines import TEN_THOUSAND_YEARS


class _Call:
    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining

    def time_remaining(self) -> float | None:
        return self.remaining


def test_the_shard_bounds_a_unary_command_by_a_call_deadline_of_any_length() -> None:
    """Before: storing now + 10,000 years in the int64 field raised, failing the call."""
    command = orders_pb2.OrderCommand(place_order=orders_pb2.PlaceOrder(symbol="BTC-USD"))
    _bound_by_call_deadline(command, cast(Any, _Call(TEN_THOUSAND_YEARS)))
    assert command.deadline_unix_nanos == INT64_MAX
    command.deadline_unix_nanos = 5
    _bound_by_call_deadline(command, cast(Any, _Call(TEN_THOUSAND_YEARS)))
    assert command.deadline_unix_nanos == 5  # its own, earlier deadline stands
    command.deadline_unix_nanos = 0
    _bound_by_call_deadline(command, cast(Any, _Call(None)))
    assert command.deadline_unix_nanos == 0
