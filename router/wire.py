"""Execute-stream messages built from bytes, so each command is encoded exactly once.

A caller's OrderCommand is serialized once (``encode``). ShardCommand has the same field
numbers (shard.proto), and protobuf parsers keep the last value of a repeated scalar field,
so appending the router's correlation id and deadline after the caller's bytes overrides
the caller's own values without re-encoding anything. A batch is then the concatenation of
length-prefixed commands behind the batch id: no message objects, no copies per field.
"""

from __future__ import annotations

from collections.abc import Sequence

from api.protowire import varint
from matching.v1 import orders_pb2, shard_pb2

# Subscriptions per control message: under 0.75 MB with the longest accounts (64 bytes), far
# below any sensible max message size.
CONTROL_CHUNK = 10_000

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


def control_requests(
    *,
    router_id: str = "",
    subscribe: Sequence[shard_pb2.AccountSubscription] = (),
    unsubscribe: Sequence[str] = (),
    chunk: int = CONTROL_CHUNK,
) -> list[bytes]:
    """Messages without commands (stream options, subscription changes): the shard answers
    none. A router's whole state, sent on (re)connecting, has no bound of its own, so it
    goes in messages of at most ``chunk`` entries; the router id rides on the first. Nothing
    to say: no message."""
    messages: list[bytes] = []
    while subscribe or unsubscribe or (router_id and not messages):
        message = shard_pb2.ExecuteRequest(subscribe=subscribe[:chunk])
        room = chunk - len(message.subscribe)
        message.unsubscribe_accounts.extend(unsubscribe[:room])
        subscribe, unsubscribe = subscribe[chunk:], unsubscribe[room:]
        if router_id and not messages:
            message.options.router_id = router_id
        messages.append(message.SerializeToString())
    return messages


def subscription_changes(
    before: list[shard_pb2.AccountSubscription], after: list[shard_pb2.AccountSubscription]
) -> list[bytes]:
    """The control messages that turn the shard's state ``before`` into ``after``; none if
    they are the same."""
    old = {s.account: s.cancel_on_disconnect for s in before}
    new = {s.account: s.cancel_on_disconnect for s in after}
    subscribe = [s for s in after if old.get(s.account) != s.cancel_on_disconnect]
    unsubscribe = [account for account in old if account not in new]
    return control_requests(subscribe=subscribe, unsubscribe=unsubscribe)
