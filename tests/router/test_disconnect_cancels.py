"""Which symbols a cancel-on-disconnect retries one by one: those a shard-wide mass cancel
came back with as retryable errors (a shard paused them for a move or a reload before this
router saw it; MassCancelResult.errors says to retry the mass cancel for them)."""

from __future__ import annotations

from matching.v1 import orders_pb2
from router.gateway import refused_symbols
from tests.router.support import BTC, ETH, T

RC = T.RejectCode


def mass_cancel(symbol: str, account: str) -> orders_pb2.OrderCommand:
    return orders_pb2.OrderCommand(
        mass_cancel=orders_pb2.MassCancel(symbol=symbol, account=account, on_disconnect=True)
    )


def refused(symbol: str, reason: int, retryable: bool) -> orders_pb2.CommandError:
    return orders_pb2.CommandError(reason=reason, symbol=symbol, retryable=retryable)


def result(*errors: orders_pb2.CommandError) -> orders_pb2.CommandResult:
    return orders_pb2.CommandResult(mass_cancel=orders_pb2.MassCancelResult(errors=errors))


def test_only_symbols_a_shard_wide_cancel_could_not_reach_for_now_are_retried() -> None:
    commands = [mass_cancel("", "mm"), mass_cancel("", "mm2"), mass_cancel(ETH, "mm")]
    results = [
        result(refused(BTC, RC.REJECT_CODE_SYMBOL_MOVING, True)),
        result(
            refused("", RC.REJECT_CODE_SHUTTING_DOWN, True),  # a whole shard: in transit
            refused(ETH, RC.REJECT_CODE_SYMBOL_RECOVERING, True),
            refused(BTC, RC.REJECT_CODE_NOT_OWNER, False),
        ),
        result(refused(ETH, RC.REJECT_CODE_SYMBOL_MOVING, True)),  # one symbol: retried already
    ]
    again = refused_symbols(commands, results)
    assert [(c.mass_cancel.symbol, c.mass_cancel.account) for c in again] == [
        (BTC, "mm"),
        (ETH, "mm2"),
    ]
    # Still cancels-on-disconnect: the shards tell the accounts' streams what they took.
    assert all(c.mass_cancel.on_disconnect for c in again)


def test_a_cancel_every_shard_answered_is_not_retried() -> None:
    commands = [mass_cancel("", "mm")]
    assert refused_symbols(commands, [result()]) == []
    error = orders_pb2.CommandResult(error=refused("", RC.REJECT_CODE_OVERLOADED, True))
    assert refused_symbols(commands, [error]) == []
