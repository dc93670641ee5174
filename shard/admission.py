"""Admission of one command into a batch: owner check, idempotency, engine, recording.

Runs inside the matcher's synchronous batch step; the only I/O (claiming the client order
ids this shard has not seen recently, persistence.claims) is done beforehand, once per
batch, by ``prefetch``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence

from persistence.claims import Claimed, Key
from persistence.placements import StoredPlacement
from persistence.rows import BatchRows
from shard.engine import (
    Command,
    Fill,
    MassCancel,
    MatchingEngine,
    OrderStatus,
    PlaceOrder,
    RejectCode,
    Report,
)
from shard.errors import (
    REASON_DEADLINE_EXCEEDED,
    REASON_DUPLICATE_DIFFERENT_CONTENT,
    REASON_NOT_OWNER,
    REASON_SYMBOL_MOVING,
    REASON_SYMBOL_RECOVERING,
    REASON_UNKNOWN_SYMBOL,
    CommandFailure,
)
from shard.idempotency import Fingerprint, IdempotencyIndex, Placement, Replay, fingerprint
from shard.ownership import OwnedSymbol, Ownership, SymbolState
from shard.recording import record

_new = tuple.__new__  # builds NamedTuples without their Python-level __new__
_UNKNOWN = -1  # a replayed fill's maker state, where rows stored before migration 0003 lack it
_LATE = CommandFailure(
    REASON_DEADLINE_EXCEEDED, "the command's deadline passed before it could run; not executed"
)
_BOUND_ELSEWHERE = CommandFailure(
    REASON_DUPLICATE_DIFFERENT_CONTENT, "client order id already used for another symbol"
)

Claim = Callable[[dict[Key, str]], Awaitable[Claimed]]
Outcome = Report | Replay | CommandFailure


class Admission:
    def __init__(
        self,
        engine: MatchingEngine,
        ownership: Ownership,
        index: IdempotencyIndex,
        claim: Claim,
    ) -> None:
        self._engine = engine
        self._ownership = ownership
        self._index = index
        self._claim = claim
        self._bound: dict[Key, str] = {}  # ids of this batch bound to a symbol but not placed

    async def prefetch(self, commands: Iterable[Command]) -> None:
        """Claim the client order ids not in the index (one round trip per batch), loading
        the placements of those used before."""
        index_get = self._index.get
        wanted: dict[Key, str] = {}
        self._bound = bound = {}
        for c in commands:
            if type(c) is PlaceOrder and c.client_order_id:
                key = (c.account, c.client_order_id)
                if index_get(key) is None:
                    first = wanted.setdefault(key, c.symbol)
                    if first != c.symbol:  # only the first may place it, even if rejected
                        bound[key] = first
        if not wanted:
            return
        claimed = await self._claim(wanted)
        for stored in claimed.placements:
            self._index.add((stored.account, stored.client_order_id), _placement_from(stored))
        bound.update((k, s) for k, s in claimed.symbols.items() if s != wanted[k])

    def admit_all(
        self,
        commands: Sequence[Command],
        rows: BatchRows,
        touched: set[str],
        deadlines: Sequence[int] | None = None,
        now: int = 0,
    ) -> list[Outcome]:
        """Each command's outcome, in order; executed ones are recorded into ``rows``. A
        command whose deadline (ns since the epoch, 0 = none) is before ``now`` is not run."""
        get_owned = self._ownership.get
        index_get, index_add = self._index.get, self._index.add
        execute = self._engine.execute
        epochs = rows.epochs
        bound = self._bound
        serving = SymbolState.SERVING
        outcomes: list[Outcome] = []
        for i, cmd in enumerate(commands):
            symbol = cmd.symbol
            owned = get_owned(symbol)
            if owned is None or owned.state is not serving:
                outcomes.append(self._not_served(symbol, owned))
                continue
            if deadlines is not None and 0 < deadlines[i] < now:
                outcomes.append(_LATE)
                continue
            placing: tuple[Key, tuple[object, ...]] | None = None
            if type(cmd) is PlaceOrder and cmd.client_order_id:
                key = (cmd.account, cmd.client_order_id)
                fp = fingerprint(cmd)
                seen = index_get(key)
                if seen is not None:
                    outcomes.append(_replay(seen, fp))
                    continue
                if bound and bound.get(key, symbol) != symbol:
                    outcomes.append(_BOUND_ELSEWHERE)
                    continue
                placing = (key, fp)
            report = execute(cmd)
            record(cmd, report, owned.epoch, rows)
            # Indexed only once recorded: a batch that fails forgets what its rows hold.
            if placing is not None and report.order_id:
                index_add(placing[0], _new(Placement, (placing[1], report)))
            epochs[symbol] = owned.epoch
            touched.add(symbol)
            outcomes.append(report)
        return outcomes

    def admit_owed(
        self, cancels: list[MassCancel], rows: BatchRows, touched: set[str]
    ) -> list[Outcome]:
        """Mass cancels owed to gone clients, on symbols held here, serving or pausing for
        a hand-over (the caller checks, in the same synchronous step)."""
        outcomes: list[Outcome] = []
        for cmd in cancels:
            owned = self._ownership.get(cmd.symbol)
            assert owned is not None and owned.state is not SymbolState.RECOVERING
            report = self._engine.execute(cmd)
            record(cmd, report, owned.epoch, rows)
            rows.epochs[cmd.symbol] = owned.epoch
            touched.add(cmd.symbol)
            outcomes.append(report)
        return outcomes

    def forget(self, failed: list[BatchRows]) -> None:
        """Placements of batches that will never commit must not answer retries."""
        for rows in failed:
            for order in rows.orders.values():
                if order.client_order_id:
                    self._index.discard((order.account, order.client_order_id))

    def _not_served(self, symbol: str, owned: OwnedSymbol | None) -> CommandFailure:
        if owned is not None and owned.state is SymbolState.MOVING:
            return CommandFailure(
                REASON_SYMBOL_MOVING, f"{symbol} is moving to another shard; retry"
            )
        if owned is not None:
            return CommandFailure(
                REASON_SYMBOL_RECOVERING,
                f"{symbol} is being recovered; retry",
            )
        if not self._ownership.is_known(symbol):
            return CommandFailure(REASON_UNKNOWN_SYMBOL, f"unknown symbol {symbol}")
        hint = self._ownership.hint(symbol)
        return CommandFailure(
            REASON_NOT_OWNER,
            f"this shard does not own {symbol}",
            owner_hint=hint,
        )


def _replay(seen: Placement, fp: tuple[object, ...]) -> Outcome:
    if seen.fingerprint != fp:
        return CommandFailure(
            REASON_DUPLICATE_DIFFERENT_CONTENT,
            "client order id already used with different content",
        )
    return Replay(seen.report)


def _placement_from(p: StoredPlacement) -> Placement:
    fp = Fingerprint(
        p.symbol, p.side, p.quantity, p.price, p.order_type, p.time_in_force, p.post_only, p.stp
    )
    fills = tuple(
        Fill(
            f.maker_order_id,
            f.maker_account,
            f.maker_client_order_id,
            p.order_id,
            f.price,
            f.quantity,
            _UNKNOWN if f.maker_leaves_qty is None else f.maker_leaves_qty,
            _UNKNOWN,  # the maker's cum: no field of a taker's answer (shard/edge.py)
        )
        for f in p.fills
    )
    report = Report(
        p.symbol,
        p.seq,
        p.order_id,
        p.client_order_id,
        p.account,
        OrderStatus(p.status),
        RejectCode(p.reject_code),
        p.price,
        p.cum_qty,
        p.leaves_qty,
        p.seq if p.leaves_qty else 0,  # it rests: queued by its own command
        fills,
        tuple(p.expired or ()),
        p.side,
    )
    return Placement(fp, report)
