"""The market-data messages a shard publishes, built from committed state (marketdata/ has the
format: keys, diffs, the subscriber's book). Pure functions, called by the publishing task,
never on the commit path."""

from __future__ import annotations

from typing import NamedTuple

from marketdata.book import diff_side, levels_pb
from matching.v1 import gateway_pb2, market_data_pb2, types_pb2
from shard.engine import Fill
from shard.pipeline import BookView

_TRADING = types_pb2.SYMBOL_STATUS_TRADING
_HALTED = types_pb2.SYMBOL_STATUS_HALTED
_RESNAPSHOT = market_data_pb2.FEED_STATE_RESNAPSHOT


class TradeBatch(NamedTuple):
    """The fills of one committed command, as the after-commit hook saw them."""

    seq: int
    taker_side: int  # matching.v1 Side; 0 when the command does not reveal it (amends)
    fills: tuple[Fill, ...]
    time_unix_nanos: int


class Encoded(NamedTuple):
    """One symbol's writes of one round: the book value, stream entries, channel message."""

    book: bytes
    trades: list[bytes]
    message: bytes | None  # None: nothing for subscribers (a heartbeat rewrite)
    resnapshot: bool = False  # the message is a RESNAPSHOT (the chain was broken)


def snapshot_update(view: BookView, depth: int, as_of: int) -> market_data_pb2.MarketDataUpdate:
    return market_data_pb2.MarketDataUpdate(
        symbol=view.symbol,
        seq=view.seq,
        snapshot=market_data_pb2.OrderBookSnapshot(
            bids=levels_pb(view.bids[:depth]),
            asks=levels_pb(view.asks[:depth]),
            symbol_status=_HALTED if view.halted else _TRADING,
            as_of_unix_nanos=as_of,
        ),
    )


def delta_update(old: BookView, new: BookView, depth: int) -> market_data_pb2.MarketDataUpdate:
    """What turns the top ``depth`` levels of ``old`` into those of ``new``; prev_seq chains."""
    return market_data_pb2.MarketDataUpdate(
        symbol=new.symbol,
        seq=new.seq,
        delta=market_data_pb2.OrderBookDelta(
            prev_seq=old.seq,
            bids=levels_pb(diff_side(old.bids[:depth], new.bids[:depth])),
            asks=levels_pb(diff_side(old.asks[:depth], new.asks[:depth])),
        ),
    )


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
    entries = [u.SerializeToString() for u in updates]
    if restart or published is None:
        channel = [resnapshot_update(view.symbol, view.seq, restart or "no published state")]
    elif view.seq != published.seq:
        channel = [delta_update(published, view, depth), *updates]
    else:
        return Encoded(book, entries, None)
    message = gateway_pb2.StreamMarketDataResponse(updates=channel).SerializeToString()
    return Encoded(book, entries, message, resnapshot=channel[0].HasField("status"))
