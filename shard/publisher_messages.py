"""The market-data messages a shard publishes, built from committed state (marketdata/ has the
format: keys, diffs, the subscriber's book) and encoded as bytes (marketdata/wire.py). Pure
functions, called by the publishing task, never on the commit path."""

from __future__ import annotations

from typing import NamedTuple

from marketdata import wire
from matching.v1 import market_data_pb2, types_pb2
from shard.engine import Fill
from shard.pipeline import BookView

_TRADING = types_pb2.SYMBOL_STATUS_TRADING
_HALTED = types_pb2.SYMBOL_STATUS_HALTED
_RESNAPSHOT = market_data_pb2.FEED_STATE_RESNAPSHOT


class TradeBatch(NamedTuple):
    """The fills of one committed command, as the after-commit hook saw them."""

    seq: int
    taker_side: int  # matching.v1 Side of the taker (an amend's: the amended order's side)
    fills: tuple[Fill, ...]
    time_unix_nanos: int


class Encoded(NamedTuple):
    """One symbol's writes of one round: the book value, stream entry, channel message."""

    book: bytes
    trades: bytes | None  # None: no trades this round
    message: bytes | None  # None: nothing for subscribers (a heartbeat rewrite)
    resnapshot: bool = False  # the message is a RESNAPSHOT (the chain was broken)


def snapshot_update(view: BookView, depth: int, as_of: int) -> bytes:
    status = _HALTED if view.halted else _TRADING
    return wire.snapshot_update(
        view.symbol, view.seq, view.bids[:depth], view.asks[:depth], status, as_of
    )


def delta_update(old: BookView, new: BookView, depth: int) -> bytes:
    """What turns the top ``depth`` levels of ``old`` into those of ``new``; prev_seq chains."""
    before = (old.bids[:depth], old.asks[:depth])
    return wire.delta_update(
        new.symbol, new.seq, old.seq, before, (new.bids[:depth], new.asks[:depth])
    )


def trades_update(symbol: str, batch: TradeBatch) -> bytes:
    fills = [(fill.price, fill.quantity) for fill in batch.fills]
    return wire.trades_update(symbol, batch.seq, batch.taker_side, fills, batch.time_unix_nanos)


def resnapshot_update(symbol: str, seq: int, reason: str) -> bytes:
    status = market_data_pb2.FeedStatus(state=_RESNAPSHOT, reason=reason)
    return market_data_pb2.MarketDataUpdate(
        symbol=symbol, seq=seq, status=status
    ).SerializeToString()


def encode(
    view: BookView,
    published: BookView | None,
    restart: str,
    trades: list[TradeBatch],
    depth: int,
    as_of: int,
) -> Encoded:
    """One symbol's round. ``restart`` (a reason) breaks the chain: RESNAPSHOT, no delta;
    otherwise a delta from ``published`` (what subscribers hold) if the seq moved on."""
    updates = [trades_update(view.symbol, batch) for batch in trades]
    book = snapshot_update(view, depth, as_of)
    entry = wire.response(updates) if updates else None
    if restart or published is None:  # the round's trades still go out, after the marker
        reason = restart or "no published state"
        channel = [resnapshot_update(view.symbol, view.seq, reason), *updates]
        return Encoded(book, entry, wire.response(channel), resnapshot=True)
    if view.seq != published.seq:
        channel = [delta_update(published, view, depth), *updates]
        return Encoded(book, entry, wire.response(channel))
    return Encoded(book, entry, None)
