"""Fixed limits of the matching.v1 contract, as the proto comments state them.

Each constant names the proto comment it comes from, so a change to the contract has one
obvious place to follow it here. These are wire-shape limits that hold for every symbol;
per-symbol reference data (tick, lot, min/max quantity, status) is the engine's business.
"""

from __future__ import annotations

import re
from typing import Final

# gateway.proto SubmitBatchRequest.commands / TradeRequest.commands: "at most 1,000".
# docs/decisions/0002-api-contract.md applies the same limit to every message carrying
# commands, so the shard's ExecuteRequest uses it too.
MAX_COMMANDS_PER_MESSAGE: Final = 1_000

# types.proto: "Symbols: 1-32 characters from [A-Z0-9._-]"; no braces because the symbol
# is a Redis Cluster hash tag.
SYMBOL_MIN_CHARS: Final = 1
SYMBOL_MAX_CHARS: Final = 32
SYMBOL_PATTERN: Final = re.compile(r"[A-Z0-9._-]{1,32}")  # use with fullmatch()

# types.proto: "Accounts: opaque non-empty strings of at most 64 bytes" (UTF-8 bytes).
ACCOUNT_MAX_BYTES: Final = 64

# types.proto: "client_order_id: at most 64 characters" (characters, as the engine counts).
CLIENT_ORDER_ID_MAX_CHARS: Final = 64
# Past 64 characters a placement is the engine's reject, reported and journalled; past this
# many it is malformed, refused before it reaches a shard (api/validation.py).
CLIENT_ORDER_ID_WIRE_MAX_CHARS: Final = 1_024

# gateway.proto TradeStreamOptions.accounts: "At most 1,000". Each is subscribed on every
# shard link a router has, and sent again whole when a link reconnects.
STREAM_MAX_ACCOUNTS: Final = 1_000

# gateway.proto StreamMarketDataRequest.symbols: "at least one; at most 100".
MARKET_DATA_MIN_SYMBOLS: Final = 1
MARKET_DATA_MAX_SYMBOLS: Final = 100

# types.proto SymbolSpec.symbol_id: order ids are symbol_id << 40 | seq, "so it must stay
# below 2^23" (the id must fit a positive int64).
SYMBOL_ID_LIMIT: Final = 1 << 23

# types.proto: prices and quantities are int64 in minor units.
INT64_MAX: Final = (1 << 63) - 1
