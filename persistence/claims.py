"""Client order id claims: the symbol an (account, client_order_id) is bound to, forever.

A shard claims the ids of a batch's new placements before it matches the batch. The first
claim binds an id to its symbol; only that symbol's owner (one at a time, by the fence) may
place it, so two shards can never both place one id. Without claims the UNIQUE index on
orders found that out only at COMMIT, failing a whole batch whose effects on the books then
had to be reloaded (decision 0016).

A claim commits without waiting for its WAL flush. That is safe: a claim matters once an
order names it, and that order's batch commits later with ``synchronous_commit=on``, which
flushes the WAL up to its own commit, claims before it included. Only a refusal can rest
on a claim a crash then loses: ALREADY_EXISTS for an id another shard had just claimed,
whose placement then never committed. The id was taken when refused; after the crash it
may be placed after all. No accepted result ever depends on an unflushed claim.

Keys are claimed in one fixed order (bytewise): two shards claiming overlapping ids in
different orders would otherwise deadlock until Postgres broke the tie a second later.
"""

from __future__ import annotations

from typing import NamedTuple

import psycopg

from .placements import StoredPlacement, find_placements
from .text_keys import unnest_texts

Key = tuple[str, str]  # (account, client_order_id)

# set_config(..., true) lasts for this statement's own transaction, commit included.
_CLAIM = (
    "INSERT INTO client_order_claims (account, client_order_id, symbol)"
    " SELECT k.account, k.client_order_id, k.symbol"
    " FROM {keys} AS k(account, client_order_id, symbol),"
    " (SELECT set_config('synchronous_commit', 'off', true)) AS unflushed"
    ' ORDER BY k.account COLLATE "C", k.client_order_id COLLATE "C"'
)
_CLAIM_UNCLAIMED = _CLAIM + " ON CONFLICT DO NOTHING"
_BOUND = (
    "SELECT c.account, c.client_order_id, c.symbol"
    " FROM {keys} AS k(account, client_order_id)"
    " JOIN client_order_claims c USING (account, client_order_id)"
)


class Claimed(NamedTuple):
    placements: list[StoredPlacement]  # ids placed before: retries, or duplicates
    symbols: dict[Key, str]  # the symbol each id is bound to; empty when every id was new


async def claim_client_order_ids(conn: psycopg.AsyncConnection, wanted: dict[Key, str]) -> Claimed:
    """Claim each id for its symbol (``conn`` in autocommit). One round trip when every id
    is new, the usual case; otherwise also what was placed and bound before."""
    accounts = [key[0] for key in wanted]
    ids = [key[1] for key in wanted]
    unnest, params = unnest_texts([accounts, ids, list(wanted.values())])
    try:
        await conn.execute(_CLAIM.format(keys=unnest), params)
        return Claimed([], {})
    except psycopg.errors.UniqueViolation:  # rare: skipping conflicts costs every row more
        await conn.execute(_CLAIM_UNCLAIMED.format(keys=unnest), params)
    unnest, params = unnest_texts([accounts, ids])
    cur = await conn.execute(_BOUND.format(keys=unnest), params)
    symbols = {(account, cloid): symbol for account, cloid, symbol in await cur.fetchall()}
    return Claimed(await find_placements(conn, list(wanted)), symbols)
