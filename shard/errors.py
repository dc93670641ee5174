"""The shard's errors and the failures of commands that were not executed."""

from __future__ import annotations

from dataclasses import dataclass

from matching.v1 import types_pb2


class ShardError(Exception):
    """Root of shard errors."""

    retriable = False


class Overloaded(ShardError):
    """Bounded queues are full: the caller should back off (RESOURCE_EXHAUSTED)."""

    retriable = True


# Why a command was not executed: matching.v1 RejectCode values (100+, or UNKNOWN_SYMBOL).
# The gRPC code and retryability of each reason live in one table, api/status.py.
REASON_UNKNOWN_SYMBOL = types_pb2.REJECT_CODE_UNKNOWN_SYMBOL
REASON_NOT_OWNER = types_pb2.REJECT_CODE_NOT_OWNER
REASON_SYMBOL_MOVING = types_pb2.REJECT_CODE_SYMBOL_MOVING
REASON_SYMBOL_RECOVERING = types_pb2.REJECT_CODE_SYMBOL_RECOVERING
REASON_DUPLICATE_DIFFERENT_CONTENT = (
    types_pb2.REJECT_CODE_DUPLICATE_CLIENT_ORDER_ID_DIFFERENT_CONTENT
)
REASON_OVERLOADED = types_pb2.REJECT_CODE_OVERLOADED
REASON_OUTCOME_UNKNOWN = types_pb2.REJECT_CODE_OUTCOME_UNKNOWN
REASON_DEADLINE_EXCEEDED = types_pb2.REJECT_CODE_DEADLINE_EXCEEDED


@dataclass(frozen=True)
class CommandFailure:
    """A command that was not executed (no sequence number, nothing changed)."""

    reason: int
    message: str
    owner_hint: str = ""  # shard id of the owner, when known
