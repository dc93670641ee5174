"""api.status: statuses, rich BadRequest details, the CommandError trailer, abort helpers."""

from __future__ import annotations

from typing import Any, cast

import grpc
import pytest
from google.rpc.error_details_pb2 import BadRequest
from google.rpc.status_pb2 import Status as RpcStatus
from grpc_status import rpc_status

from api import status
from api.validation import Violation
from matching.v1 import orders_pb2, types_pb2

RC = types_pb2.RejectCode
VIOLATIONS = [
    Violation("commands[3].place_order.quantity", "must be positive"),
    Violation("commands[3].place_order.symbol", "must be 1-32 characters from [A-Z0-9._-]"),
]


class FakeCall:
    """What rpc_status.from_call reads from a finished call, built from a grpc.Status."""

    def __init__(self, st: grpc.Status) -> None:
        self._st = st

    def code(self) -> grpc.StatusCode:
        return self._st.code

    def details(self) -> str:
        return self._st.details

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._st.trailing_metadata


class Aborted(Exception):
    pass


class FakeContext:
    """Records what a grpc.aio servicer context was asked to abort with, then raises,
    as the real one does."""

    def __init__(self) -> None:
        self.status: grpc.Status | None = None
        self.abort_args: tuple[grpc.StatusCode, str, Any] | None = None

    async def abort_with_status(self, st: grpc.Status) -> None:
        self.status = st
        raise Aborted

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing: Any = ()) -> None:
        self.abort_args = (code, details, trailing)
        raise Aborted


def unpack_bad_request(st: grpc.Status) -> list[Violation]:
    rich = rpc_status.from_call(cast(grpc.Call, FakeCall(st)))  # also checks code/message agree
    assert isinstance(rich, RpcStatus)
    assert rich.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    (detail,) = rich.details
    found = BadRequest()
    assert detail.Unpack(found)
    return [Violation(v.field, v.description) for v in found.field_violations]


def test_bad_request_status_carries_violations() -> None:
    st = status.bad_request_status(VIOLATIONS)
    assert st.code is grpc.StatusCode.INVALID_ARGUMENT
    assert st.details == status.MALFORMED_MESSAGE
    assert unpack_bad_request(st) == VIOLATIONS
    assert status.decode_bad_request(st.trailing_metadata) == VIOLATIONS


def test_bad_request_message_is_sanitized() -> None:
    st = status.bad_request_status(VIOLATIONS, "too many commands\nTraceback (most recent...)")
    assert st.details == "too many commands"
    assert unpack_bad_request(st) == VIOLATIONS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fine", "fine"),
        ("  padded  ", "padded"),
        ("first line\nTraceback (most recent call last):\n  File x", "first line"),
        ("", "default"),
        ("\n\n", "default"),
        ("x" * 500, "x" * status.MAX_MESSAGE_CHARS),
    ],
)
def test_client_message(text: str, expected: str) -> None:
    assert status.client_message(text, "default") == expected


# The table of DESIGN section 8, spelled out independently of the implementation.
EXPECTED_REASONS = {
    RC.REJECT_CODE_UNKNOWN_SYMBOL: (grpc.StatusCode.NOT_FOUND, False),
    RC.REJECT_CODE_NOT_OWNER: (grpc.StatusCode.UNAVAILABLE, True),
    RC.REJECT_CODE_SYMBOL_MOVING: (grpc.StatusCode.UNAVAILABLE, True),
    RC.REJECT_CODE_SHUTTING_DOWN: (grpc.StatusCode.UNAVAILABLE, True),
    RC.REJECT_CODE_SYMBOL_RECOVERING: (grpc.StatusCode.UNAVAILABLE, True),
    RC.REJECT_CODE_DUPLICATE_CLIENT_ORDER_ID_DIFFERENT_CONTENT: (
        grpc.StatusCode.ALREADY_EXISTS,
        False,
    ),
    RC.REJECT_CODE_DEADLINE_EXCEEDED: (grpc.StatusCode.DEADLINE_EXCEEDED, False),
    RC.REJECT_CODE_OVERLOADED: (grpc.StatusCode.RESOURCE_EXHAUSTED, True),
    RC.REJECT_CODE_PERMISSION_DENIED: (grpc.StatusCode.PERMISSION_DENIED, False),
    RC.REJECT_CODE_MALFORMED_COMMAND: (grpc.StatusCode.INVALID_ARGUMENT, False),
    RC.REJECT_CODE_OUTCOME_UNKNOWN: (grpc.StatusCode.UNAVAILABLE, True),
}


@pytest.mark.parametrize("reason", sorted(EXPECTED_REASONS))
def test_command_error_code_and_retryable(reason: types_pb2.RejectCode.ValueType) -> None:
    code, retryable = EXPECTED_REASONS[reason]
    err = status.command_error(reason, symbol="BTC-USDT")
    assert (err.code, err.reason, err.retryable) == (code.value[0], reason, retryable)
    assert err.message  # a default text, never empty
    assert err.symbol == "BTC-USDT"
    assert status.command_error_status(err).code is code


def test_every_router_reason_of_the_proto_is_mapped() -> None:
    # Drift guard: a reason >= 100 added to the proto must get a code here.
    proto_reasons = {v.number for v in RC.DESCRIPTOR.values if v.number >= 100}
    assert proto_reasons | {RC.REJECT_CODE_UNKNOWN_SYMBOL} == status.COMMAND_ERROR_REASONS
    assert set(EXPECTED_REASONS) == status.COMMAND_ERROR_REASONS


def test_error_code_numbers_equal_grpc_status_codes() -> None:
    for value in types_pb2.ErrorCode.DESCRIPTOR.values:
        if value.number:
            name = value.name.removeprefix("ERROR_CODE_")
            assert grpc.StatusCode[name].value[0] == value.number


@pytest.mark.parametrize("reason", [RC.REJECT_CODE_SYMBOL_HALTED, RC.REJECT_CODE_UNSPECIFIED, 999])
def test_engine_codes_are_not_command_errors(reason: int) -> None:
    with pytest.raises(ValueError, match="not a CommandError reason"):
        status.command_error(cast(types_pb2.RejectCode.ValueType, reason))


def test_not_owner_status_carries_owner_hint_in_trailer() -> None:
    hint = types_pb2.OwnerHint(shard_id="shard-2", address="10.0.0.2:7001", epoch=41)
    err = status.command_error(RC.REJECT_CODE_NOT_OWNER, owner_hint=hint, symbol="ETH-USDT")
    st = status.command_error_status(err)
    assert st.code is grpc.StatusCode.UNAVAILABLE
    assert st.details == "not the owner"
    decoded = status.decode_command_error(st.trailing_metadata)
    assert decoded == err
    assert decoded is not None and decoded.owner_hint == hint and decoded.retryable
    assert status.decode_bad_request(st.trailing_metadata) == []


def test_malformed_command_error_has_both_trailers() -> None:
    err = status.malformed_command_error(VIOLATIONS, symbol="BTC-USDT")
    assert err.code == types_pb2.ERROR_CODE_INVALID_ARGUMENT
    assert err.reason == RC.REJECT_CODE_MALFORMED_COMMAND
    assert [(v.field, v.description) for v in err.field_violations] == VIOLATIONS
    st = status.command_error_status(err)
    assert st.code is grpc.StatusCode.INVALID_ARGUMENT
    assert unpack_bad_request(st) == VIOLATIONS
    assert status.decode_command_error(st.trailing_metadata) == err


def test_command_error_message_is_sanitized() -> None:
    err = status.command_error(RC.REJECT_CODE_OVERLOADED, "queue full\n  File 'x.py', line 3")
    assert err.message == "queue full"
    assert status.command_error_status(err).details == "queue full"


def test_command_error_without_code_never_passes_as_ok() -> None:
    st = status.command_error_status(orders_pb2.CommandError(message="secret\ntrace"))
    assert (st.code, st.details, st.trailing_metadata) == (
        grpc.StatusCode.INTERNAL,
        status.INTERNAL_MESSAGE,
        (),
    )


def test_decoders_ignore_missing_trailers() -> None:
    assert status.decode_command_error(None) is None
    assert status.decode_command_error((("other", b"x"),)) is None
    assert status.decode_bad_request((("grpc-status-details-bin", b""),)) == []


async def test_abort_malformed() -> None:
    ctx = FakeContext()
    with pytest.raises(Aborted):
        await status.abort_malformed(cast(status.AioContext, ctx), VIOLATIONS)
    assert ctx.status is not None
    assert ctx.status.code is grpc.StatusCode.INVALID_ARGUMENT
    assert unpack_bad_request(ctx.status) == VIOLATIONS


async def test_abort_with_command_error() -> None:
    ctx = FakeContext()
    err = status.command_error(RC.REJECT_CODE_SYMBOL_MOVING)
    with pytest.raises(Aborted):
        await status.abort_with_command_error(cast(status.AioContext, ctx), err)
    assert ctx.status is not None
    assert ctx.status.code is grpc.StatusCode.UNAVAILABLE
    assert status.decode_command_error(ctx.status.trailing_metadata) == err


async def test_abort_with_code_sanitizes_and_never_sends_ok() -> None:
    ctx = FakeContext()
    meta = (("x-owner", "a"),)
    with pytest.raises(Aborted):
        await status.abort_with_code(
            cast(status.AioContext, ctx), grpc.StatusCode.UNAUTHENTICATED, "no token\nTrace", meta
        )
    assert ctx.abort_args == (grpc.StatusCode.UNAUTHENTICATED, "no token", meta)
    ok_ctx = FakeContext()
    with pytest.raises(Aborted):
        await status.abort_with_code(cast(status.AioContext, ok_ctx), grpc.StatusCode.OK, "?")
    assert ok_ctx.abort_args == (grpc.StatusCode.INTERNAL, status.INTERNAL_MESSAGE, ())


async def test_abort_internal_has_fixed_text() -> None:
    ctx = FakeContext()
    with pytest.raises(Aborted):
        await status.abort_internal(cast(status.AioContext, ctx))
    assert ctx.abort_args == (grpc.StatusCode.INTERNAL, status.INTERNAL_MESSAGE, ())
