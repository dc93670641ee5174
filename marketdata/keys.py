"""Redis keys of one symbol. The hash tag ``{SYMBOL}`` puts all of them in one slot, so a
publisher can write them in one pipeline/transaction on one node. A shard publishes in
rounds (at most one every ~20 ms): each round covers every batch committed since the last.

    md:{SYM}:book     the latest L2 snapshot: a serialized MarketDataUpdate (snapshot set),
                      rewritten in every round after commits touched the symbol and at
                      least every HEARTBEAT_S while the symbol is owned (freshness)
    md:{SYM}:trades   a capped stream (XADD MAXLEN ~ TRADES_MAXLEN entries, i.e. rounds) of
                      recent trades: one entry per round that had trades, field b"u" = a
                      serialized StreamMarketDataResponse whose updates are PublicTrades
                      updates (one per command with trades) in seq order
    md:{SYM}:updates  the sharded pub/sub channel (SPUBLISH): one message per round, a
                      serialized StreamMarketDataResponse whose updates are, in seq order,
                      one delta (prev_seq -> seq) then the round's trades; or, when the
                      publisher cannot chain (a new owner or a reload, a failed write, trades
                      dropped while Redis was down, a halt or resume), a FeedStatus
                      RESNAPSHOT update then the round's trades, with a fresh snapshot in the
                      key already
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
