"""The controller's decisions, from views built by hand (no I/O)."""

from __future__ import annotations

from cluster.decisions import Policy, decide
from cluster.model import Assignment, AssignmentState, ClusterView, ShardRecord
from cluster.placement import rendezvous

ACTIVE, MOVING, LOADING = AssignmentState.ACTIVE, AssignmentState.MOVING, AssignmentState.LOADING


def live(*ids: str) -> dict[str, ShardRecord]:
    return {i: ShardRecord(i, f"127.0.0.1:{7100 + n}") for n, i in enumerate(ids)}


def at_home(symbol: str, shards: dict[str, ShardRecord], revision: int = 7) -> Assignment:
    return Assignment(symbol, str(rendezvous(symbol, shards)), ACTIVE, 5, revision=revision)


def test_new_symbols_are_placed_loading_on_their_hash_owner() -> None:
    shards = live("a", "b", "c")
    view = ClusterView(revision=3, shards=shards, symbols=frozenset({"X", "Y"}))
    decisions = decide(view, {}, Policy())
    assert [(d.symbol, d.expected_revision, d.assignment.state) for d in decisions] == [
        ("X", 0, LOADING),
        ("Y", 0, LOADING),
    ]
    assert decisions[0].assignment.shard_id == rendezvous("X", shards)
    assert decisions[0].assignment.epoch == 0  # a new ownership: epoch = the write's revision


def test_nothing_to_do_when_everything_is_home() -> None:
    shards = live("a", "b")
    view = ClusterView(shards=shards, assignments={s: at_home(s, shards) for s in "PQRS"})
    assert decide(view, {}, Policy()) == []


def test_dead_owner_fails_over_to_a_live_shard() -> None:
    shards = live("a", "b")
    view = ClusterView(
        shards=shards, assignments={"X": Assignment("X", "dead", ACTIVE, 4, revision=9)}
    )
    (d,) = decide(view, {}, Policy())
    assert (d.symbol, d.expected_revision, d.reason) == ("X", 9, "failover")
    assert d.assignment.state is LOADING and d.assignment.shard_id in shards


def test_moving_with_dead_source_goes_to_its_live_target() -> None:
    view = ClusterView(
        shards=live("b"),
        assignments={"X": Assignment("X", "a", MOVING, 4, target="b", revision=9)},
    )
    (d,) = decide(view, {}, Policy())
    assert (d.assignment.shard_id, d.assignment.state, d.reason) == ("b", LOADING, "failover")


def test_moving_to_a_dead_target_is_rolled_back_with_the_same_epoch() -> None:
    view = ClusterView(
        shards=live("a"),
        assignments={"X": Assignment("X", "a", MOVING, 4, target="gone", revision=9)},
    )
    (d,) = decide(view, {}, Policy())
    assert d.assignment == Assignment("X", "a", ACTIVE, 4)
    assert d.expected_revision == 9


def test_stuck_move_is_forced_only_after_the_timeout() -> None:
    view = ClusterView(
        shards=live("a", "b"),
        pins={"X": "b"},
        assignments={"X": Assignment("X", "a", MOVING, 4, target="b", revision=9)},
    )
    assert decide(view, {("X", 9): 1.0}, Policy(move_timeout=5.0)) == []
    (d,) = decide(view, {("X", 9): 5.0}, Policy(move_timeout=5.0))
    assert (d.assignment.shard_id, d.assignment.state) == ("b", LOADING)


def test_rebalance_respects_the_in_transit_budget_and_the_auto_flag() -> None:
    two = live("a", "b")
    three = live("a", "b", "c")
    symbols = [f"S{i}" for i in range(60)]
    assignments = {s: at_home(s, two) for s in symbols}
    view = ClusterView(shards=three, assignments=assignments)
    wanted = [s for s in symbols if rendezvous(s, three) == "c"]
    assert len(wanted) > 5
    moves = decide(view, {}, Policy(max_moves=5))
    assert len(moves) == 5
    assert all(d.assignment.state is MOVING and d.assignment.target == "c" for d in moves)
    assert decide(view, {}, Policy(auto_rebalance=False)) == []


def test_no_planned_move_goes_to_a_held_shard_but_failover_does() -> None:
    """A shard that (re)joined less than join_hold ago takes no pin, drain or rebalance
    move; a symbol whose owner died goes to it if it is the desired owner."""
    shards = live("a", "b", "c")
    symbols = [f"S{i}" for i in range(30)]
    to_c = [s for s in symbols if rendezvous(s, shards) == "c"]
    on_a = {s: Assignment(s, "a", ACTIVE, 5, revision=7) for s in symbols}
    dead = {s: Assignment(s, "gone", ACTIVE, 5, revision=7) for s in symbols}
    moves = decide(ClusterView(shards=shards, assignments=on_a), {}, Policy())
    assert {d.assignment.target for d in moves} >= {"c"}
    held = frozenset({"c"})
    moves = decide(ClusterView(shards=shards, assignments=on_a), {}, Policy(), held)
    assert moves and all(d.assignment.target == "b" for d in moves)
    pinned = ClusterView(shards=shards, pins={"S0": "c"}, assignments=on_a)
    assert "S0" not in {d.symbol for d in decide(pinned, {}, Policy(), held)}
    failovers = decide(ClusterView(shards=shards, assignments=dead), {}, Policy(), held)
    assert {d.symbol for d in failovers if d.assignment.shard_id == "c"} == set(to_c)


def test_drain_moves_even_without_auto_rebalance() -> None:
    shards = live("a", "b")
    assignments = {s: at_home(s, shards) for s in (f"S{i}" for i in range(20))}
    view = ClusterView(shards=shards, draining=frozenset({"a"}), assignments=assignments)
    moves = decide(view, {}, Policy(auto_rebalance=False))
    on_a = {s for s, a in assignments.items() if a.shard_id == "a"}
    assert {d.symbol for d in moves} == on_a
    assert all(d.assignment.target == "b" and d.reason == "drain" for d in moves)


def test_no_live_shard_means_no_decision() -> None:
    view = ClusterView(
        symbols=frozenset({"X"}), assignments={"Y": Assignment("Y", "dead", ACTIVE, 2, revision=3)}
    )
    assert decide(view, {}, Policy()) == []
