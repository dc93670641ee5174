"""Where symbols should live: weighted rendezvous (HRW) hashing over live shards, pins first.

Hashing only proposes; routers route by the assignment table. With HRW each symbol ranks every
shard by a hash score and takes the best, so adding or removing one of N shards moves only the
symbols that shard wins or held: about 1/(N+1) of them, and nothing else. Weights follow the
logarithmic method (Schindelhauer and Schomaker): score = -weight / ln(u) with u uniform in
(0, 1) from the hash, which gives each shard a share proportional to its weight.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

from cluster.model import AssignmentState, ClusterView, ShardRecord

_SCALE = float(1 << 64)


def _score(symbol: str, shard_id: str, weight: float) -> float:
    digest = hashlib.blake2b(f"{symbol}\x00{shard_id}".encode(), digest_size=8).digest()
    u = (int.from_bytes(digest, "big") + 0.5) / _SCALE  # strictly inside (0, 1)
    return -weight / math.log(u)


def rendezvous(symbol: str, shards: Mapping[str, ShardRecord]) -> str | None:
    """The shard ``symbol`` hashes to among ``shards`` (None if there are none)."""
    best: str | None = None
    best_score = -1.0
    for shard_id in sorted(shards):  # sorted: ties break the same way everywhere
        score = _score(symbol, shard_id, max(shards[shard_id].weight, 1e-9))
        if score > best_score:
            best, best_score = shard_id, score
    return best


def desired_owner(symbol: str, view: ClusterView) -> str | None:
    """A live pin wins; otherwise rendezvous over live shards that are not draining."""
    pinned = view.pins.get(symbol)
    if pinned is not None and pinned in view.shards:
        return pinned
    return rendezvous(symbol, view.placeable_shards())


@dataclass(frozen=True)
class Move:
    symbol: str
    from_shard: str
    to_shard: str
    reason: str  # "pin", "drain", "rebalance", "failover", "new"


def plan_moves(view: ClusterView) -> list[Move]:
    """Planned moves that bring ACTIVE assignments on live shards to their desired owner."""
    moves: list[Move] = []
    for symbol in sorted(view.assignments):
        current = view.assignments[symbol]
        if current.state is not AssignmentState.ACTIVE or current.shard_id not in view.shards:
            continue  # in transit, or the owner is dead: failover handles it
        target = desired_owner(symbol, view)
        if target is None or target == current.shard_id:
            continue
        moves.append(
            Move(symbol, current.shard_id, target, _reason(symbol, current.shard_id, view))
        )
    return moves


def _reason(symbol: str, owner: str, view: ClusterView) -> str:
    if view.pins.get(symbol) in view.shards:
        return "pin"
    if owner in view.draining:
        return "drain"
    return "rebalance"
