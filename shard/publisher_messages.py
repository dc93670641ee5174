"""The market-data messages a shard publishes, built from committed state (marketdata/ has the
format: keys, diffs, the subscriber's book). Pure functions, called by the publishing task,
never on the commit path."""

from __future__ import annotations

from typing import NamedTuple

from marketdata.book import delta_update as book_delta
from marketdata.book import snapshot_update as book_snapshot
from matching.v1 import gateway_pb2, market_data_pb2, types_pb2
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


def snapshot_update(view: BookView, depth: int, as_of: int) -> market_data_pb2.MarketDataUpdate:
    status = _HALTED if view.halted else _TRADING
    return book_snapshot(view.symbol, view.seq, view.bids[:depth], view.asks[:depth], status, as_of)


def delta_update(old: BookView, new: BookView, depth: int) -> market_data_pb2.MarketDataUpdate:
    """What turns the top ``depth`` levels of ``old`` into those of ``new``; prev_seq chains."""
    before = (old.bids[:depth], old.asks[:depth])
    return book_delta(new.symbol, new.seq, old.seq, before, (new.bids[:depth], new.asks[:depth]))


def trades_update(symbol: str, batch: TradeBatch) -> market_data_pb2.MarketDataUpdate:
    side, now = batch.taker_side, batch.time_unix_nanos
    return market_data_pb2.MarketDataUpdate(
        symbol=symbol,
        seq=batch.seq,
        trades=market_data_pb2.PublicTrades(
            trades=[
                market_data_pb2.PublicTrade(
                    price=fill.price,
                    quantity=fill.quantity,
                    taker_side=side,  # type: ignore[arg-type]
                    match_index=i,
                    time_unix_nanos=now,
                )
                for i, fill in enumerate(batch.fills)
            ]
        ),
    )


def resnapshot_update(symbol: str, seq: int, reason: str) -> market_data_pb2.MarketDataUpdate:
    return market_data_pb2.MarketDataUpdate(
        symbol=symbol,
        seq=seq,
        status=market_data_pb2.FeedStatus(state=_RESNAPSHOT, reason=reason),
    )


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
    book = snapshot_update(view, depth, as_of).SerializeToString()
    entry = _response(updates) if updates else None
    if restart or published is None:  # the round's trades still go out, after the marker
        reason = restart or "no published state"
        channel = [resnapshot_update(view.symbol, view.seq, reason), *updates]
    elif view.seq != published.seq:
        channel = [delta_update(published, view, depth), *updates]
    else:
        return Encoded(book, entry, None)
    return Encoded(book, entry, _response(channel), resnapshot=channel[0].HasField("status"))


def _response(updates: list[market_data_pb2.MarketDataUpdate]) -> bytes:
    return gateway_pb2.StreamMarketDataResponse(updates=updates).SerializeToString()
