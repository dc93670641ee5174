"""The one place that turns "this call or command was not executed" into gRPC terms.

DESIGN section 8 and docs/decisions/0002-api-contract.md fix the shape:

* malformed input -> INVALID_ARGUMENT whose ``grpc-status-details-bin`` trailer is a
  google.rpc.Status carrying a google.rpc.BadRequest (field violations), the standard
  rich-error form every gRPC client library can decode (built with grpcio-status);
* every per-command failure is a ``CommandError``. Batch and stream RPCs put it in their
  ``CommandResult``; unary RPCs fail with its code and send it serialized in the
  ``matching-command-error-bin`` trailer (reason, retryable, owner hint).

The code and retryability of each reason live in one table here, so router and shard
cannot disagree. Client-visible text is cut to its first line and a bounded length, so
an exception's traceback can never reach a client even if a caller passes one by mistake;
callers should pass fixed text anyway (never ``str(exc)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn, TypeAlias

import grpc
import grpc.aio
from google.protobuf.any_pb2 import Any as AnyPb
from google.rpc.error_details_pb2 import BadRequest
from google.rpc.status_pb2 import Status as RpcStatus
from grpc_status import rpc_status

from matching.v1 import orders_pb2, shard_pb2, types_pb2

from .validation import Violation

COMMAND_ERROR_TRAILER = "matching-command-error-bin"
STATUS_DETAILS_TRAILER = "grpc-status-details-bin"  # the key grpc_status writes and reads
MAX_MESSAGE_CHARS = 200
MALFORMED_MESSAGE = "malformed request"
INTERNAL_MESSAGE = "internal error"

Metadata: TypeAlias = tuple[tuple[str, str | bytes], ...]
AioContext: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

_RC = types_pb2.RejectCode
_EC = types_pb2.ErrorCode


class _Reason(NamedTuple):
    code: types_pb2.ErrorCode.ValueType
    retryable: bool
    message: str


# DESIGN section 8 and the ErrorCode comments in types.proto. DEADLINE_EXCEEDED is not
# retryable: the deadline exists to keep stale quotes off the book, so the client decides.
# OVERLOADED is ("back off and retry"); OUTCOME_UNKNOWN is, with the same client_order_id.
_REASONS: dict[int, _Reason] = {
    _RC.REJECT_CODE_UNKNOWN_SYMBOL: _Reason(_EC.ERROR_CODE_NOT_FOUND, False, "unknown symbol"),
    _RC.REJECT_CODE_NOT_OWNER: _Reason(_EC.ERROR_CODE_UNAVAILABLE, True, "not the owner"),
    _RC.REJECT_CODE_SYMBOL_MOVING: _Reason(_EC.ERROR_CODE_UNAVAILABLE, True, "symbol moving"),
    _RC.REJECT_CODE_SHUTTING_DOWN: _Reason(_EC.ERROR_CODE_UNAVAILABLE, True, "shutting down"),
    _RC.REJECT_CODE_SYMBOL_RECOVERING: _Reason(
        _EC.ERROR_CODE_UNAVAILABLE, True, "symbol recovering"
    ),
    _RC.REJECT_CODE_DUPLICATE_CLIENT_ORDER_ID_DIFFERENT_CONTENT: _Reason(
        _EC.ERROR_CODE_ALREADY_EXISTS, False, "client_order_id reused with different content"
    ),
    _RC.REJECT_CODE_DEADLINE_EXCEEDED: _Reason(
        _EC.ERROR_CODE_DEADLINE_EXCEEDED, False, "deadline passed before execution"
    ),
    _RC.REJECT_CODE_OVERLOADED: _Reason(_EC.ERROR_CODE_RESOURCE_EXHAUSTED, True, "overloaded"),
    _RC.REJECT_CODE_PERMISSION_DENIED: _Reason(
        _EC.ERROR_CODE_PERMISSION_DENIED, False, "account not allowed"
    ),
    _RC.REJECT_CODE_MALFORMED_COMMAND: _Reason(
        _EC.ERROR_CODE_INVALID_ARGUMENT, False, "malformed command"
    ),
    _RC.REJECT_CODE_OUTCOME_UNKNOWN: _Reason(
        _EC.ERROR_CODE_UNAVAILABLE, True, "outcome unknown: look up or retry by client_order_id"
    ),
}
COMMAND_ERROR_REASONS = frozenset(_REASONS)

# ErrorCode numbers equal grpc.StatusCode numbers (types.proto).
_STATUS_BY_NUMBER: dict[int, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}


@dataclass(frozen=True)
class _Status(grpc.Status):
    """A concrete grpc.Status (the grpc package only declares the interface)."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: Metadata


def client_message(text: str, default: str) -> str:
    """Text safe to send: first line only, at most MAX_MESSAGE_CHARS, else ``default``."""
    line = text.strip().split("\n", 1)[0].strip()
    return line[:MAX_MESSAGE_CHARS] or default


# --- building -----------------------------------------------------------------------------


def bad_request(violations: Iterable[Violation]) -> BadRequest:
    return BadRequest(
        field_violations=[
            BadRequest.FieldViolation(field=v.field, description=v.description) for v in violations
        ]
    )


def bad_request_status(
    violations: Iterable[Violation], message: str = MALFORMED_MESSAGE
) -> grpc.Status:
    """INVALID_ARGUMENT with the violations as google.rpc.BadRequest details."""
    detail = AnyPb()
    detail.Pack(bad_request(violations))
    rich = RpcStatus(
        code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
        message=client_message(message, MALFORMED_MESSAGE),
        details=[detail],
    )
    return rpc_status.to_status(rich)


def command_error(
    reason: types_pb2.RejectCode.ValueType,
    message: str = "",
    *,
    owner_hint: types_pb2.OwnerHint | None = None,
    violations: Iterable[Violation] = (),
    symbol: str = "",
) -> orders_pb2.CommandError:
    """A CommandError whose code and retryable flag come from the reason table.

    ``reason`` must be one of COMMAND_ERROR_REASONS (>= 100, or UNKNOWN_SYMBOL); anything
    else is a programming error and raises ValueError.
    """
    spec = _REASONS.get(reason)
    if spec is None:
        raise ValueError(f"{reason} is not a CommandError reason")
    return orders_pb2.CommandError(
        code=spec.code,
        reason=reason,
        message=client_message(message, spec.message),
        retryable=spec.retryable,
        owner_hint=owner_hint,
        field_violations=[
            orders_pb2.FieldViolation(field=v.field, description=v.description) for v in violations
        ],
        symbol=symbol,
    )


def command_symbol(command: orders_pb2.OrderCommand | shard_pb2.ShardCommand) -> str:
    """The symbol a command names, for its CommandError ("" when no kind is set, or for a
    kind without one)."""
    kind = command.WhichOneof("command")
    return str(getattr(getattr(command, kind), "symbol", "")) if kind else ""


def malformed_command_error(
    violations: Iterable[Violation], symbol: str = ""
) -> orders_pb2.CommandError:
    return command_error(_RC.REJECT_CODE_MALFORMED_COMMAND, violations=violations, symbol=symbol)


def command_error_status(error: orders_pb2.CommandError) -> grpc.Status:
    """The status a unary call fails with: ``error.code``, the serialized CommandError in
    COMMAND_ERROR_TRAILER and, for INVALID_ARGUMENT, BadRequest details as well."""
    code = _STATUS_BY_NUMBER.get(error.code)
    if code is None or code is grpc.StatusCode.OK:  # unset or unknown: never "succeed"
        return _Status(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, ())
    message = client_message(error.message, code.value[1])
    trailer = ((COMMAND_ERROR_TRAILER, error.SerializeToString()),)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        violations = [Violation(v.field, v.description) for v in error.field_violations]
        rich = bad_request_status(violations, message)
        return _Status(rich.code, rich.details, rich.trailing_metadata + trailer)
    return _Status(code, message, trailer)


# --- aborting a grpc.aio call ---------------------------------------------------------


async def abort_malformed(
    context: AioContext, violations: Iterable[Violation], message: str = MALFORMED_MESSAGE
) -> NoReturn:
    """Fail the whole call with INVALID_ARGUMENT + BadRequest (e.g. > 1,000 commands)."""
    await context.abort_with_status(bad_request_status(violations, message))


async def abort_with_command_error(context: AioContext, error: orders_pb2.CommandError) -> NoReturn:
    """Fail a unary call with the CommandError's status and trailer."""
    await context.abort_with_status(command_error_status(error))


async def abort_with_code(
    context: AioContext, code: grpc.StatusCode, message: str, trailing_metadata: Metadata = ()
) -> NoReturn:
    """Any other status (UNAUTHENTICATED, stream-level UNAVAILABLE...), with safe text."""
    if code is grpc.StatusCode.OK:
        code, message = grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
    await context.abort(code, client_message(message, code.value[1]), trailing_metadata)


async def abort_internal(context: AioContext) -> NoReturn:
    """An unexpected failure: fixed text, no details. Log the exception server-side."""
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


# --- decoding (clients, routers, tests) -------------------------------------------------


def _trailer(metadata: Metadata | None, key: str) -> bytes | None:
    for name, value in metadata or ():
        if name == key and isinstance(value, bytes):
            return value
    return None


def decode_bad_request(metadata: Metadata | None) -> list[Violation]:
    """Field violations carried in a status's trailing metadata ([] if none)."""
    raw = _trailer(metadata, STATUS_DETAILS_TRAILER)
    if raw is None:
        return []
    out: list[Violation] = []
    for detail in RpcStatus.FromString(raw).details:
        found = BadRequest()
        if detail.Unpack(found):
            out.extend(Violation(v.field, v.description) for v in found.field_violations)
    return out


def decode_command_error(metadata: Metadata | None) -> orders_pb2.CommandError | None:
    """The CommandError of a failed unary call, if the server sent one."""
    raw = _trailer(metadata, COMMAND_ERROR_TRAILER)
    return None if raw is None else orders_pb2.CommandError.FromString(raw)
