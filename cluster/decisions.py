"""What the controller does next, decided from a view of the cluster (pure: no I/O).

Each decision is one compare-and-swap on the assignment's revision, so a decision made from a
stale view simply loses and is made again from the next view. The rules, in order:

- a catalog symbol with no assignment is placed (LOADING on its desired owner);
- an owner that is no longer live fails over: LOADING on a live shard (a MOVING symbol whose
  source died goes to its target if that is alive);
- a MOVING symbol whose target died or left is rolled back: ACTIVE on the source, same epoch;
- a MOVING symbol stuck past the move timeout is forced to its target (the source is fenced);
- ACTIVE symbols away from their desired owner are moved (pins and drains always; other
  rebalancing when ``auto_rebalance``), at most ``max_moves`` symbols in transit at a time,
  but never to a shard that (re)joined less than ``join_hold`` ago (``held``): a shard that
  crash-loops would otherwise take symbols each time it starts and fail them over each time
  it dies. Failover and first placement do not wait: a symbol with no owner takes any.
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.model import Assignment, AssignmentState, ClusterView
from cluster.placement import desired_owner, plan_moves


@dataclass(frozen=True)
class Decision:
    symbol: str
    expected_revision: int  # 0: create (no assignment yet)
    assignment: Assignment
    reason: str


@dataclass(frozen=True)
class Policy:
    move_timeout: float = 10.0  # seconds a MOVING symbol may wait for its source
    max_moves: int = 32  # symbols in transit (MOVING or LOADING) at once
    auto_rebalance: bool = True  # move symbols when shards join, not only on pins/drains
    join_hold: float = 10.0  # seconds a (re)joined shard stays live before moves go to it


def decide(
    view: ClusterView,
    stuck_for: dict[tuple[str, int], float],
    policy: Policy,
    held: frozenset[str] = frozenset(),
) -> list[Decision]:
    """Decisions for ``view``; ``stuck_for`` maps (symbol, revision) to seconds in that state;
    ``held``: live shards that joined less than ``policy.join_hold`` ago."""
    out = _placements(view) + _repairs(view, stuck_for, policy)
    in_transit = sum(1 for a in view.assignments.values() if not a.routable())
    budget = policy.max_moves - in_transit
    repaired = {d.symbol for d in out}
    for move in plan_moves(view):
        if budget <= 0:
            break
        if move.symbol in repaired or move.to_shard in held:
            continue
        if move.reason == "rebalance" and not policy.auto_rebalance:
            continue
        current = view.assignments[move.symbol]
        out.append(
            Decision(move.symbol, current.revision, current.moving_to(move.to_shard), move.reason)
        )
        budget -= 1
    return out


def _placements(view: ClusterView) -> list[Decision]:
    out = []
    for symbol in sorted(view.symbols - view.assignments.keys()):
        owner = desired_owner(symbol, view)
        if owner is not None:
            out.append(
                Decision(symbol, 0, Assignment(symbol, owner, AssignmentState.LOADING), "new")
            )
    return out


def _repairs(
    view: ClusterView, stuck_for: dict[tuple[str, int], float], policy: Policy
) -> list[Decision]:
    out = []
    for symbol in sorted(view.assignments):
        current = view.assignments[symbol]
        fixed = _repair(current, view, stuck_for.get((symbol, current.revision), 0.0), policy)
        if fixed is not None:
            out.append(Decision(symbol, current.revision, fixed[0], fixed[1]))
    return out


def _repair(
    current: Assignment, view: ClusterView, stuck: float, policy: Policy
) -> tuple[Assignment, str] | None:
    live = view.shards
    if current.state is AssignmentState.MOVING:
        if current.shard_id not in live:
            target = (
                current.target if current.target in live else desired_owner(current.symbol, view)
            )
            return None if target is None else (current.handed_to(target), "failover")
        if current.target not in live:
            return current.activated(), "abort: target not live"
        if stuck >= policy.move_timeout:
            return current.handed_to(current.target), "forced: source did not hand over"
        return None
    if current.shard_id in live:
        return None
    target = desired_owner(current.symbol, view)
    return None if target is None else (current.handed_to(target), "failover")
