"""Shape checks of whole request messages (gateway, shard and admin services).

Built on api.validation: same ``Violation`` lists, paths from the request's root
(``order.symbol``, ``commands``, ``subscribe[2].account``). For batch and stream requests
only the message-level rules are checked here; each command is checked with
``validate_command`` on its own, because a bad command is answered with its own
CommandError and never fails the message (docs/decisions/0002-api-contract.md). Only too
many commands (or a stream-level rule) fails the whole call.
"""

from __future__ import annotations

from matching.v1 import gateway_pb2, shard_pb2, types_pb2

from . import limits
from .validation import (
    Violation,
    validate_account,
    validate_amend_order,
    validate_cancel_order,
    validate_command_count,
    validate_mass_cancel,
    validate_place_order,
    validate_symbol,
)

# --- unary order entry ------------------------------------------------------------------


def validate_submit_order_request(
    req: gateway_pb2.SubmitOrderRequest, *, strict: bool = False
) -> list[Violation]:
    if not req.HasField("order"):
        return [Violation("order", "is required")]
    return validate_place_order(req.order, "order.", strict=strict)


def validate_cancel_order_request(
    req: gateway_pb2.CancelOrderRequest, *, strict: bool = False
) -> list[Violation]:
    if not req.HasField("cancel"):
        return [Violation("cancel", "is required")]
    return validate_cancel_order(req.cancel, "cancel.", strict=strict)


def validate_amend_order_request(
    req: gateway_pb2.AmendOrderRequest, *, strict: bool = False
) -> list[Violation]:
    if not req.HasField("amend"):
        return [Violation("amend", "is required")]
    return validate_amend_order(req.amend, "amend.", strict=strict)


def validate_mass_cancel_request(req: gateway_pb2.MassCancelRequest) -> list[Violation]:
    if not req.HasField("mass_cancel"):
        return [Violation("mass_cancel", "is required")]
    return validate_mass_cancel(req.mass_cancel, "mass_cancel.")


# --- batches and streams ------------------------------------------------------------------


def validate_submit_batch_request(req: gateway_pb2.SubmitBatchRequest) -> list[Violation]:
    """Message level only (see module doc): the command count."""
    return validate_command_count(len(req.commands))


def validate_trade_request(
    req: gateway_pb2.TradeRequest, *, first_message: bool
) -> list[Violation]:
    """Message level only. Options in a later message fail the stream (gateway.proto)."""
    out = validate_command_count(len(req.commands))
    if req.HasField("options"):
        if not first_message:
            out.append(Violation("options", "only allowed in the stream's first message"))
        accounts = req.options.accounts
        if len(accounts) > limits.STREAM_MAX_ACCOUNTS:
            out.append(Violation("options.accounts", f"at most {limits.STREAM_MAX_ACCOUNTS}"))
        else:
            for i, account in enumerate(accounts):
                out.extend(validate_account(account, f"options.accounts[{i}]"))
    return out


def validate_execute_request(
    req: shard_pb2.ExecuteRequest, *, first_message: bool
) -> list[Violation]:
    """Message level only: options, batch id, subscriptions, command count."""
    out = validate_command_count(len(req.commands))
    if req.HasField("options") and not first_message:
        out.append(Violation("options", "only allowed in the stream's first message"))
    if req.commands and req.batch_id == 0:
        # The answer is matched to its batch by batch_id; 0 is reserved for messages that
        # carry only unsolicited reports (shard.proto).
        out.append(Violation("batch_id", "must be non-zero when commands are sent"))
    for i, sub in enumerate(req.subscribe):
        out.extend(validate_account(sub.account, f"subscribe[{i}].account"))
    for i, account in enumerate(req.unsubscribe_accounts):
        out.extend(validate_account(account, f"unsubscribe_accounts[{i}]"))
    return out


# --- queries ------------------------------------------------------------------------------


def validate_get_order_request(req: gateway_pb2.GetOrderRequest) -> list[Violation]:
    """No engine sees a lookup, so every rule is a shape rule here (unlike CancelOrder)."""
    out = validate_symbol(req.symbol)
    out.extend(validate_account(req.account))
    if req.order_id < 0:
        out.append(Violation("order_id", "must not be negative"))
    elif not req.order_id and not req.client_order_id:
        out.append(Violation("order_id", "order_id or client_order_id is required"))
    if len(req.client_order_id) > limits.CLIENT_ORDER_ID_MAX_CHARS:
        out.append(
            Violation(
                "client_order_id",
                f"must be at most {limits.CLIENT_ORDER_ID_MAX_CHARS} characters",
            )
        )
    return out


def validate_get_order_book_request(req: gateway_pb2.GetOrderBookRequest) -> list[Violation]:
    return validate_symbol(req.symbol)


def validate_stream_market_data_request(
    req: gateway_pb2.StreamMarketDataRequest,
) -> list[Violation]:
    count = len(req.symbols)
    if not limits.MARKET_DATA_MIN_SYMBOLS <= count <= limits.MARKET_DATA_MAX_SYMBOLS:
        return [
            Violation(
                "symbols",
                f"must list {limits.MARKET_DATA_MIN_SYMBOLS}-{limits.MARKET_DATA_MAX_SYMBOLS}"
                " symbols",
            )
        ]
    out: list[Violation] = []
    for i, symbol in enumerate(req.symbols):
        out.extend(validate_symbol(symbol, f"symbols[{i}]"))
    return out


# --- admin --------------------------------------------------------------------------------


def validate_symbol_spec(spec: types_pb2.SymbolSpec, prefix: str = "spec.") -> list[Violation]:
    """CreateSymbol's reference data, by the SymbolSpec comments in types.proto.

    symbol_id 0 asks the server to allocate one; status UNSPECIFIED means TRADING there.
    """
    out = validate_symbol(spec.symbol, prefix + "symbol")
    if not 0 <= spec.symbol_id < limits.SYMBOL_ID_LIMIT:
        out.append(Violation(prefix + "symbol_id", "must be in [0, 2^23)"))
    if spec.tick_size <= 0:
        out.append(Violation(prefix + "tick_size", "must be positive"))
    if spec.lot_size <= 0:
        out.append(Violation(prefix + "lot_size", "must be positive"))
    if spec.min_quantity < max(spec.lot_size, 1):
        out.append(Violation(prefix + "min_quantity", "must be at least lot_size"))
    if spec.max_quantity < spec.min_quantity:
        out.append(Violation(prefix + "max_quantity", "must be at least min_quantity"))
    if spec.status not in (
        types_pb2.SYMBOL_STATUS_UNSPECIFIED,
        types_pb2.SYMBOL_STATUS_TRADING,
        types_pb2.SYMBOL_STATUS_HALTED,
    ):
        out.append(Violation(prefix + "status", "must be TRADING, HALTED or unspecified"))
    return out
