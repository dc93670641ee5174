"""Rendezvous placement: balance, weights, minimal movement, pins and drains."""

from __future__ import annotations

from collections import Counter

from cluster.model import Assignment, AssignmentState, ClusterView, ShardRecord
from cluster.placement import desired_owner, plan_moves, rendezvous

SYMBOLS = [f"SYM{i}-USDT" for i in range(3000)]


def shards(n: int, weights: dict[str, float] | None = None) -> dict[str, ShardRecord]:
    out = {}
    for i in range(1, n + 1):
        sid = f"shard-{i}"
        out[sid] = ShardRecord(sid, f"127.0.0.1:{7100 + i}", (weights or {}).get(sid, 1.0))
    return out


def placement(live: dict[str, ShardRecord]) -> dict[str, str | None]:
    return {s: rendezvous(s, live) for s in SYMBOLS}


def test_balance_is_within_ten_percent_of_even() -> None:
    counts = Counter(placement(shards(5)).values())
    assert set(counts) == {f"shard-{i}" for i in range(1, 6)}
    for count in counts.values():
        assert abs(count - 600) < 60, counts


def test_weights_give_proportional_shares() -> None:
    counts = Counter(placement(shards(3, {"shard-1": 2.0})).values())
    # shard-1 should hold half (2 of 4 weight units), the others a quarter each.
    assert abs(counts["shard-1"] - 1500) < 120, counts
    assert abs(counts["shard-2"] - 750) < 90, counts


def test_adding_a_shard_moves_about_one_in_n_plus_one_and_only_to_it() -> None:
    for n in (2, 3, 5, 8):
        before = placement(shards(n))
        after = placement(shards(n + 1))
        moved = [s for s in SYMBOLS if before[s] != after[s]]
        assert all(after[s] == f"shard-{n + 1}" for s in moved)
        expected = len(SYMBOLS) / (n + 1)
        assert abs(len(moved) - expected) < 0.2 * expected, (n, len(moved))


def test_removing_a_shard_moves_only_its_symbols() -> None:
    for n in (3, 4, 6):
        before = placement(shards(n))
        live = shards(n)
        del live[f"shard-{n}"]
        after = placement(live)
        moved = [s for s in SYMBOLS if before[s] != after[s]]
        assert set(moved) == {s for s in SYMBOLS if before[s] == f"shard-{n}"}
        assert abs(len(moved) - len(SYMBOLS) / n) < 0.2 * len(SYMBOLS) / n


def test_no_shards_places_nothing() -> None:
    assert rendezvous("BTC-USDT", {}) is None


def _view(assignments: dict[str, str], **kwargs: object) -> ClusterView:
    return ClusterView(
        revision=10,
        shards=shards(3),
        assignments={
            s: Assignment(s, owner, AssignmentState.ACTIVE, epoch=5, revision=5)
            for s, owner in assignments.items()
        },
        **kwargs,  # type: ignore[arg-type]
    )


def test_live_pin_wins_dead_pin_falls_back_to_hashing() -> None:
    view = _view({}, pins={"BTC-USDT": "shard-2", "ETH-USDT": "shard-9"})
    assert desired_owner("BTC-USDT", view) == "shard-2"
    assert desired_owner("ETH-USDT", view) == rendezvous("ETH-USDT", view.shards)


def test_plan_moves_drained_and_pinned_symbols_and_nothing_in_place() -> None:
    live = shards(3)
    in_place = {s: str(rendezvous(s, live)) for s in SYMBOLS[:50]}
    assert plan_moves(_view(in_place)) == []
    on_two = [s for s, owner in in_place.items() if owner == "shard-2"]
    drained = plan_moves(_view(in_place, draining=frozenset({"shard-2"})))
    assert sorted(m.symbol for m in drained) == sorted(on_two)
    assert all(m.to_shard != "shard-2" and m.reason == "drain" for m in drained)
    pinned_symbol = next(s for s, owner in in_place.items() if owner != "shard-3")
    pinned = plan_moves(_view(in_place, pins={pinned_symbol: "shard-3"}))
    assert [(m.symbol, m.to_shard, m.reason) for m in pinned] == [(pinned_symbol, "shard-3", "pin")]


def test_plan_skips_symbols_in_transit_or_on_dead_shards() -> None:
    view = ClusterView(
        shards=shards(2),
        pins={"A": "shard-2", "B": "shard-2"},
        assignments={
            "A": Assignment("A", "shard-1", AssignmentState.MOVING, 3, "shard-2", 4),
            "B": Assignment("B", "shard-7", AssignmentState.ACTIVE, 3, revision=4),
        },
    )
    assert plan_moves(view) == []
