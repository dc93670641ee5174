"""Redis keys of one symbol. The hash tag ``{SYMBOL}`` puts all of them in one slot, so a
publisher can write them in one pipeline/transaction on one node.

    md:{SYM}:book     the latest L2 snapshot: a serialized MarketDataUpdate (snapshot set),
                      rewritten after every committed batch that touched the symbol and at
                      least every HEARTBEAT_S while the symbol is owned (freshness)
    md:{SYM}:trades   a capped stream (XADD MAXLEN ~ TRADES_MAXLEN) of recent trades: one
                      entry per publishing round that had trades, field b"u" = a serialized
                      StreamMarketDataResponse whose updates are PublicTrades updates (one
                      per command with trades) in seq order
    md:{SYM}:updates  the sharded pub/sub channel (SPUBLISH): one message per committed batch,
                      a serialized StreamMarketDataResponse whose updates are, in seq order,
                      one delta (prev_seq -> seq) then the batch's trades; or a single
                      FeedStatus RESNAPSHOT update when the publisher could not chain (after
                      an outage, or as a new owner), followed by a fresh snapshot in the key
"""

from __future__ import annotations

HEARTBEAT_S = 1.0  # a snapshot older than STALE_AFTER_S is not trusted by routers
STALE_AFTER_S = 3.0
TRADES_MAXLEN = 10_000
DEFAULT_DEPTH = 50  # levels per side published (the shard's committed-book depth)


def _tag(symbol: str) -> str:
    return "md:{" + symbol + "}"


def book_key(symbol: str) -> str:
    return _tag(symbol) + ":book"


def trades_key(symbol: str) -> str:
    return _tag(symbol) + ":trades"


def updates_channel(symbol: str) -> str:
    return _tag(symbol) + ":updates"
