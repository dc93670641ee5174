"""Execute-stream messages built from bytes, so each command is encoded exactly once.

A caller's OrderCommand is serialized once (``encode``). ShardCommand has the same field
numbers (shard.proto), and protobuf parsers keep the last value of a repeated scalar field,
so appending the router's correlation id and deadline after the caller's bytes overrides
the caller's own values without re-encoding anything. A batch is then the concatenation of
length-prefixed commands behind the batch id: no message objects, no copies per field.
"""

from __future__ import annotations

from api.protowire import varint
from matching.v1 import orders_pb2, shard_pb2

_CORRELATION_ID = b"\x08"  # ShardCommand field 1, varint
_DEADLINE = b"\x10"  # ShardCommand field 2, varint
_COMMANDS = b"\x1a"  # ExecuteRequest field 3, length-delimited
_BATCH_ID = b"\x10"  # ExecuteRequest field 2, varint


def encode(command: orders_pb2.OrderCommand) -> bytes:
    return command.SerializeToString()


def deadline_field(deadline_unix_nanos: int) -> bytes:
    """The encoded deadline field: computed once per distinct deadline, not per command."""
    return _DEADLINE + varint(deadline_unix_nanos)


def frame(body: bytes, correlation_id: int, deadline: bytes) -> bytes:
    """One ExecuteRequest.commands entry: the caller's bytes with the router's id and
    deadline (``deadline_field``) appended; they win over the caller's own (module doc)."""
    tail = _CORRELATION_ID + varint(correlation_id) + deadline
    return _COMMANDS + varint(len(body) + len(tail)) + body + tail


def execute_request(batch_id: int, framed: list[bytes]) -> bytes:
    return _BATCH_ID + varint(batch_id) + b"".join(framed)


def control_request(
    *,
    router_id: str = "",
    subscribe: list[shard_pb2.AccountSubscription] | None = None,
    unsubscribe: list[str] | None = None,
) -> bytes:
    """A message without commands (stream options, subscriptions): the shard answers none."""
    message = shard_pb2.ExecuteRequest(subscribe=subscribe, unsubscribe_accounts=unsubscribe)
    if router_id:
        message.options.router_id = router_id
    return message.SerializeToString()


def subscription_changes(
    before: list[shard_pb2.AccountSubscription], after: list[shard_pb2.AccountSubscription]
) -> bytes | None:
    """The control message that turns the shard's state ``before`` into ``after``; None if
    they are the same."""
    old = {s.account: s.cancel_on_disconnect for s in before}
    new = {s.account: s.cancel_on_disconnect for s in after}
    subscribe = [s for s in after if old.get(s.account) != s.cancel_on_disconnect]
    unsubscribe = [account for account in old if account not in new]
    if not subscribe and not unsubscribe:
        return None
    return control_request(subscribe=subscribe, unsubscribe=unsubscribe)
