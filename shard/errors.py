"""The shard's errors and command failures: one root; each knows if a retry can help."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ShardError(Exception):
    """Root of shard errors."""

    retriable = False


class Overloaded(ShardError):
    """Bounded queues are full: the caller should back off (RESOURCE_EXHAUSTED)."""

    retriable = True


class FailureKind(Enum):
    """Why a command was not executed; the service edge maps these to gRPC codes."""

    UNAVAILABLE = "unavailable"  # not the owner, recovering, commit failed, shutting down
    NOT_FOUND = "not_found"  # no such symbol anywhere
    ALREADY_EXISTS = "already_exists"  # client order id reused with different content
    DEADLINE_EXCEEDED = "deadline_exceeded"
    RESOURCE_EXHAUSTED = "resource_exhausted"


# Reasons beyond the engine's reject codes, numbered as in matching.v1 RejectCode.
REASON_NOT_OWNER = 100
REASON_SYMBOL_MOVING = 101
REASON_SHUTTING_DOWN = 102
REASON_SYMBOL_RECOVERING = 103
REASON_DUPLICATE_DIFFERENT_CONTENT = 104
REASON_DEADLINE_EXCEEDED = 105
REASON_OVERLOADED = 106
REASON_OUTCOME_UNKNOWN = 109
REASON_UNKNOWN_SYMBOL = 1


@dataclass(frozen=True)
class CommandFailure:
    """A command that was not executed (no sequence number, nothing changed)."""

    kind: FailureKind
    reason: int
    message: str
    owner_hint: str = ""  # shard id of the owner, when known

    @property
    def retriable(self) -> bool:
        return self.kind in (FailureKind.UNAVAILABLE, FailureKind.RESOURCE_EXHAUSTED)
