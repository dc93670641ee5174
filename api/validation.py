"""Shape checks of inbound matching.v1 commands: is a message well-formed at all?

Every function returns a list of ``Violation(field, description)``; an empty list means
well-formed. Field paths are relative to the message passed in, with an optional
``prefix`` (``validate_command(cmd)`` gives ``place_order.symbol``, as the
``FieldViolation`` example in orders.proto; ``validate_batch`` gives
``commands[3].place_order.quantity``). Descriptions never echo the client's value, which
could be megabytes long.

Two tiers, because the contract puts the line in a different place than "no symbol could
accept it":

* Default: what the contract calls malformed (REJECT_CODE_MALFORMED_COMMAND: no command
  kind, bad or empty symbol, oversized field, too many commands) or leaves to "callers
  validate" (SetSymbolStatus.status). Servers answer these with INVALID_ARGUMENT / a
  CommandError and do not execute the command.
* ``strict=True`` adds the reference-data-independent problems that the contract assigns
  to engine reject codes (UNSPECIFIED or unknown side/type/tif/stp, non-positive
  quantity, bad price sign, post-only misuse, missing order reference, client order id
  too long, empty account) plus amends that change nothing. docs/decisions/0002 says these
  reach the engine and come back as a REJECTED report with that code, so servers keep
  ``strict=False`` unless that decision changes.

Mass cancel is the exception inside the default tier: an empty account or an unknown
side is malformed there, because a mass cancel without a symbol fans out to every
symbol and could not be answered by one engine report.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from google.protobuf.descriptor import EnumDescriptor

from matching.v1 import orders_pb2, shard_pb2, types_pb2

from . import limits


class Violation(NamedTuple):
    """One problem with one field, as google.rpc.BadRequest.FieldViolation carries it."""

    field: str
    description: str


def _numbers(descriptor: EnumDescriptor) -> frozenset[int]:
    """Valid (non-zero) numbers of a proto enum, read from its descriptor so a value
    added to the contract is accepted without touching this file."""
    return frozenset(v.number for v in descriptor.values if v.number)


_SIDES = _numbers(types_pb2.Side.DESCRIPTOR)
_ORDER_TYPES = _numbers(types_pb2.OrderType.DESCRIPTOR)
_TIFS = _numbers(types_pb2.TimeInForce.DESCRIPTOR)
_STP_MODES = _numbers(types_pb2.StpMode.DESCRIPTOR)
_SYMBOL_STATUSES = _numbers(types_pb2.SymbolStatus.DESCRIPTOR)
_LIMIT = types_pb2.ORDER_TYPE_LIMIT
_MARKET = types_pb2.ORDER_TYPE_MARKET
_GTC = types_pb2.TIME_IN_FORCE_GTC
_SYMBOL_FULLMATCH = limits.SYMBOL_PATTERN.fullmatch
# Any string of at most this many characters is at most ACCOUNT_MAX_BYTES in UTF-8 (4
# bytes per character at most), so the common short account skips the encode.
_ACCOUNT_SAFE_CHARS = limits.ACCOUNT_MAX_BYTES // 4

SYMBOL_RULE = (
    f"must be {limits.SYMBOL_MIN_CHARS}-{limits.SYMBOL_MAX_CHARS} characters from [A-Z0-9._-]"
)


# --- fields -------------------------------------------------------------------------------


# Values already found well-formed: every command repeats a handful of symbols and accounts,
# so a set lookup replaces the regex for nearly all of them. Bounded: past the cap nothing
# more is remembered (checks then run in full, as before).
_GOOD_CACHE_MAX = 100_000
_good_symbols: set[str] = set()
_good_accounts: set[str] = set()


def _symbol(out: list[Violation], value: str, prefix: str, name: str = "symbol") -> None:
    if value in _good_symbols:
        return
    if _SYMBOL_FULLMATCH(value) is None:
        out.append(Violation(prefix + name, SYMBOL_RULE))
    elif len(_good_symbols) < _GOOD_CACHE_MAX:
        _good_symbols.add(value)


# Postgres text cannot hold NUL, and control characters in ids only cause trouble
# downstream: malformed in every mode.
_CONTROL_SEARCH = re.compile(r"[\x00-\x1f\x7f]").search
CONTROL_RULE = "must not contain control characters"


def _account(out: list[Violation], value: str, prefix: str, *, required: bool) -> None:
    if value in _good_accounts:  # non-empty, so "required" holds too
        return
    found = len(out)
    if _CONTROL_SEARCH(value):
        out.append(Violation(prefix + "account", CONTROL_RULE))
    if not value:
        if required:
            out.append(Violation(prefix + "account", "is required"))
        return
    if len(value) > _ACCOUNT_SAFE_CHARS and len(value.encode()) > limits.ACCOUNT_MAX_BYTES:
        out.append(
            Violation(prefix + "account", f"must be at most {limits.ACCOUNT_MAX_BYTES} bytes")
        )
    if len(out) == found and len(_good_accounts) < _GOOD_CACHE_MAX:
        _good_accounts.add(value)


def _no_control(out: list[Violation], value: str, field: str) -> None:
    if _CONTROL_SEARCH(value):
        out.append(Violation(field, CONTROL_RULE))


def _client_order_id_shape(out: list[Violation], value: str, prefix: str) -> None:
    """A client order id over 64 characters is the engine's reject (a report); one far
    over it is refused at the edge: carried to a shard (a router frames it into a batch)
    and journalled, megabytes of it would break the router's stream to that shard."""
    _no_control(out, value, prefix + "client_order_id")
    if len(value) > limits.CLIENT_ORDER_ID_WIRE_MAX_CHARS:
        out.append(_cloid_too_long(prefix))


def _client_order_id(out: list[Violation], value: str, prefix: str) -> None:
    # Past the wire bound _client_order_id_shape has reported it already.
    if limits.CLIENT_ORDER_ID_MAX_CHARS < len(value) <= limits.CLIENT_ORDER_ID_WIRE_MAX_CHARS:
        out.append(_cloid_too_long(prefix))


def _cloid_too_long(prefix: str) -> Violation:
    return Violation(
        prefix + "client_order_id", f"must be at most {limits.CLIENT_ORDER_ID_MAX_CHARS} characters"
    )


def validate_symbol(value: str, field: str = "symbol") -> list[Violation]:
    """A symbol anywhere in the API (order book, market data, admin requests)."""
    out: list[Violation] = []
    _symbol(out, value, "", field)
    return out


def validate_account(value: str, field: str = "account") -> list[Violation]:
    """A required account anywhere in the API (subscriptions, stream options, GetOrder)."""
    out: list[Violation] = []
    _account(out, value, "", required=True)
    return [Violation(field, v.description) for v in out]


# --- commands -----------------------------------------------------------------------------


def validate_place_order(
    msg: orders_pb2.PlaceOrder, prefix: str = "", *, strict: bool = False
) -> list[Violation]:
    out: list[Violation] = []
    _symbol(out, msg.symbol, prefix)
    _account(out, msg.account, prefix, required=strict)
    _client_order_id_shape(out, msg.client_order_id, prefix)
    if strict:
        _place_engine_rules(out, msg, prefix)
    return out


def _place_engine_rules(out: list[Violation], msg: orders_pb2.PlaceOrder, prefix: str) -> None:
    """Strict tier of PlaceOrder: the engine's checks that need no reference data."""
    if msg.side not in _SIDES:
        out.append(Violation(prefix + "side", "must be SIDE_BUY or SIDE_SELL"))
    if msg.order_type not in _ORDER_TYPES:
        out.append(Violation(prefix + "order_type", "must be ORDER_TYPE_LIMIT or _MARKET"))
    if msg.time_in_force not in _TIFS:
        out.append(Violation(prefix + "time_in_force", "must be GTC, IOC or FOK"))
    if msg.stp_mode not in _STP_MODES:
        out.append(Violation(prefix + "stp_mode", "must be set (STP_MODE_NONE allows self-trades)"))
    if msg.quantity <= 0:
        out.append(Violation(prefix + "quantity", "must be positive"))
    if msg.order_type == _MARKET and msg.price != 0:
        out.append(Violation(prefix + "price", "must be 0 for a MARKET order"))
    elif msg.order_type == _LIMIT:
        if msg.price <= 0:
            out.append(Violation(prefix + "price", "must be positive for a LIMIT order"))
        elif msg.quantity > 0 and msg.price * msg.quantity > limits.INT64_MAX:
            out.append(Violation(prefix + "quantity", "price * quantity must fit int64"))
    if msg.post_only and (msg.order_type != _LIMIT or msg.time_in_force != _GTC):
        out.append(Violation(prefix + "post_only", "is only allowed on LIMIT GTC orders"))
    _client_order_id(out, msg.client_order_id, prefix)


def _order_reference(
    out: list[Violation], msg: orders_pb2.CancelOrder | orders_pb2.AmendOrder, prefix: str
) -> None:
    """Strict tier of cancel/amend: which order. Both ids set is allowed (order_id wins)."""
    if not msg.account:
        out.append(Violation(prefix + "account", "is required"))
    if msg.order_id < 0:
        out.append(Violation(prefix + "order_id", "must not be negative"))
    elif not msg.order_id and not msg.client_order_id:
        out.append(Violation(prefix + "order_id", "order_id or client_order_id is required"))
    _client_order_id(out, msg.client_order_id, prefix)


def validate_cancel_order(
    msg: orders_pb2.CancelOrder | orders_pb2.AmendOrder, prefix: str = "", *, strict: bool = False
) -> list[Violation]:
    """Also the part of an amend that names the order (see validate_amend_order)."""
    out: list[Violation] = []
    _symbol(out, msg.symbol, prefix)
    _account(out, msg.account, prefix, required=False)
    _client_order_id_shape(out, msg.client_order_id, prefix)
    if strict:
        _order_reference(out, msg, prefix)
    return out


def validate_amend_order(
    msg: orders_pb2.AmendOrder, prefix: str = "", *, strict: bool = False
) -> list[Violation]:
    out = validate_cancel_order(msg, prefix, strict=strict)
    if strict:
        if msg.new_price < 0:
            out.append(Violation(prefix + "new_price", "must not be negative (0 = unchanged)"))
        if msg.new_quantity < 0:
            out.append(Violation(prefix + "new_quantity", "must not be negative (0 = unchanged)"))
        if msg.new_price == 0 and msg.new_quantity == 0:
            out.append(Violation(prefix + "new_price", "nothing to change (both are 0)"))
    return out


def validate_mass_cancel(
    msg: orders_pb2.MassCancel, prefix: str = "", *, strict: bool = False, routed: bool = False
) -> list[Violation]:
    """``strict`` changes nothing here: every rule is malformed-tier (see module doc).
    ``routed``: it came from a router (a ShardCommand), the only sender of on_disconnect."""
    out: list[Violation] = []
    if msg.on_disconnect and not routed:
        out.append(Violation(prefix + "on_disconnect", "is set by routers only"))
    if msg.symbol:  # "" = every symbol
        _symbol(out, msg.symbol, prefix)
    _account(out, msg.account, prefix, required=True)
    if msg.side and msg.side not in _SIDES:
        out.append(Violation(prefix + "side", "must be SIDE_BUY, SIDE_SELL or unspecified"))
    return out


def validate_set_symbol_status(
    msg: orders_pb2.SetSymbolStatus, prefix: str = "", *, strict: bool = False
) -> list[Violation]:
    """The engine trusts this command's status ("callers validate"), so it is checked here."""
    out: list[Violation] = []
    _symbol(out, msg.symbol, prefix)
    if msg.status not in _SYMBOL_STATUSES:
        out.append(Violation(prefix + "status", "must be SYMBOL_STATUS_TRADING or _HALTED"))
    return out


_KIND_PREFIX = {
    kind: kind + "."
    for kind in ("place_order", "cancel_order", "amend_order", "mass_cancel", "set_symbol_status")
}


def validate_command(
    cmd: orders_pb2.OrderCommand | shard_pb2.ShardCommand,
    prefix: str = "",
    *,
    strict: bool = False,
    routed: bool = False,
) -> list[Violation]:
    """One OrderCommand or ShardCommand: exactly one kind set, and that kind well-formed.
    ``routed``: a router's own command (a ShardCommand always is), which may carry what
    clients may not."""
    kind = cmd.WhichOneof("command")
    p = (prefix + _KIND_PREFIX[kind]) if kind in _KIND_PREFIX else ""
    if kind == "place_order":
        out = validate_place_order(cmd.place_order, p, strict=strict)
    elif kind == "cancel_order":
        out = validate_cancel_order(cmd.cancel_order, p, strict=strict)
    elif kind == "amend_order":
        out = validate_amend_order(cmd.amend_order, p, strict=strict)
    elif kind == "mass_cancel":
        routed = routed or isinstance(cmd, shard_pb2.ShardCommand)
        out = validate_mass_cancel(cmd.mass_cancel, p, strict=strict, routed=routed)
    elif kind == "set_symbol_status" and isinstance(cmd, shard_pb2.ShardCommand):
        out = validate_set_symbol_status(cmd.set_symbol_status, p, strict=strict)
    else:
        out = [Violation(prefix + "command", "exactly one command kind must be set")]
    if cmd.deadline_unix_nanos < 0:
        out.append(Violation(prefix + "deadline_unix_nanos", "must not be negative (0 = none)"))
    return out


def validate_command_count(count: int, field: str = "commands") -> list[Violation]:
    """The per-message limit; over it the whole call fails (gateway.proto)."""
    if count > limits.MAX_COMMANDS_PER_MESSAGE:
        return [Violation(field, f"at most {limits.MAX_COMMANDS_PER_MESSAGE} per message")]
    return []


def validate_batch(
    commands: Sequence[orders_pb2.OrderCommand | shard_pb2.ShardCommand],
    field: str = "commands",
    *,
    strict: bool = False,
) -> list[Violation]:
    """Every problem of a list of commands, paths like ``commands[3].place_order.quantity``.

    For a whole-message verdict (tests, tools). Servers answering batches should use
    ``validate_command_count`` for the message and ``validate_command`` per command, so
    one bad command becomes one CommandError and never fails the batch (0002).
    """
    out = validate_command_count(len(commands), field)
    for i, cmd in enumerate(commands):
        found = validate_command(cmd, strict=strict)
        if found:  # paths are built only for bad commands: the good path allocates nothing
            out.extend(Violation(f"{field}[{i}].{v.field}", v.description) for v in found)
    return out
