"""Operator actions on the cluster: move, pin, drain, add symbols, rebalance, status.

Each action reads the cluster (``registry.snapshot()``, or a view the caller already holds),
checks that it makes sense, and writes the smallest change; anything that cannot be done raises
``InvalidRequest`` with a message an operator can act on. Assignment changes are one
compare-and-swap on the assignment's revision, like the controller's: an action decided from a
stale view loses instead of overwriting someone else's change.

A planned move also pins the symbol to its destination: otherwise the controller, whose job is
to keep symbols where placement (rendezvous hashing) wants them, would move it back. ``unpin``
hands the symbol back to hashing, which may move it again.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace

from cluster.errors import InvalidRequest
from cluster.model import Assignment, AssignmentState, ClusterView
from cluster.placement import Move, desired_owner, plan_moves
from cluster.registry import Registry

MOVE_POLL_INTERVAL = 0.01  # seconds between reads while waiting for a move to finish


def known_shards(view: ClusterView) -> set[str]:
    """Live shards, shards that still hold (or receive) assignments, and drain-marked ones."""
    held = {a.shard_id for a in view.assignments.values()}
    targets = {a.target for a in view.assignments.values() if a.target}
    return set(view.shards) | held | targets | set(view.draining)


def _require_symbol(view: ClusterView, symbol: str) -> None:
    if symbol not in view.symbols and symbol not in view.assignments:
        raise InvalidRequest(f"unknown symbol {symbol!r}")


def _require_known_shard(view: ClusterView, shard_id: str) -> None:
    if shard_id not in known_shards(view):
        live = ", ".join(sorted(view.shards)) or "none"
        raise InvalidRequest(f"unknown shard {shard_id!r} (live shards: {live})")


def _require_placeable(view: ClusterView, shard_id: str) -> None:
    """The shard must be able to take a symbol now: live and not draining."""
    _require_known_shard(view, shard_id)
    if shard_id not in view.shards:
        raise InvalidRequest(f"shard {shard_id!r} is not live (its lease expired)")
    if shard_id in view.draining:
        raise InvalidRequest(f"shard {shard_id!r} is draining: undrain it first")


def _active_assignment(view: ClusterView, symbol: str) -> Assignment:
    _require_symbol(view, symbol)
    current = view.assignments.get(symbol)
    if current is None:
        raise InvalidRequest(f"symbol {symbol!r} is not placed on a shard yet; try again")
    if current.state is not AssignmentState.ACTIVE:
        where = f" to {current.target}" if current.target else f" on {current.shard_id}"
        raise InvalidRequest(
            f"symbol {symbol!r} is {current.state.value}{where}: wait until it is active"
        )
    return current


async def _view(registry: Registry, view: ClusterView | None) -> ClusterView:
    return view if view is not None else await registry.snapshot()


# --- move ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MoveResult:
    symbol: str
    from_shard: str
    to_shard: str
    started: Assignment  # the MOVING assignment written
    # Set when waiting: "completed" (ACTIVE on the target), "rolled back" (ACTIVE on the
    # source again: the target failed), "timed out" (still in transit; the move goes on).
    outcome: str = "started"
    final: Assignment | None = None
    # Seconds from the MOVING write until the symbol was seen ACTIVE on the target: an upper
    # bound (within one poll interval) of the time routers buffered its commands.
    observed_pause: float | None = None

    @property
    def completed(self) -> bool:
        return self.outcome == "completed"


async def move(
    registry: Registry,
    symbol: str,
    to_shard: str,
    *,
    wait: float = 0.0,
    view: ClusterView | None = None,
) -> MoveResult:
    """Start a planned move of ``symbol`` to ``to_shard`` and pin it there.

    With ``wait`` > 0, poll until the symbol is ACTIVE on the target (or the move was rolled
    back, or ``wait`` seconds passed) and report the observed pause.
    """
    view = await _view(registry, view)
    current = _active_assignment(view, symbol)
    _require_placeable(view, to_shard)
    if current.shard_id == to_shard:
        raise InvalidRequest(f"symbol {symbol!r} is already on {to_shard!r}")
    began = time.monotonic()
    started = await registry.cas_assignment(current.revision, current.moving_to(to_shard))
    if started is None:
        raise InvalidRequest(
            f"conflict: the assignment of {symbol!r} changed concurrently; read the status"
            " and try again"
        )
    await registry.set_pin(symbol, to_shard)
    result = MoveResult(symbol, current.shard_id, to_shard, started)
    if wait <= 0:
        return result
    return await _wait_for_move(registry, result, began, wait)


async def _wait_for_move(
    registry: Registry, result: MoveResult, began: float, wait: float
) -> MoveResult:
    deadline = began + wait
    latest: Assignment | None = result.started
    while time.monotonic() < deadline:
        latest = await registry.get_assignment(result.symbol)
        if latest is not None and latest.state is AssignmentState.ACTIVE:
            if latest.shard_id == result.to_shard:
                pause = time.monotonic() - began
                return replace(result, outcome="completed", final=latest, observed_pause=pause)
            return replace(result, outcome="rolled back", final=latest)
        await asyncio.sleep(MOVE_POLL_INTERVAL)
    return replace(result, outcome="timed out", final=latest)


# --- pins -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PinResult:
    symbol: str
    shard_id: str  # the new pin; "" after unpin
    previous: str  # the pin before; "" if none
    owner: str  # the current owner ("" if not placed yet)
    will_move_to: str  # where the controller will move it; "" if it stays


async def pin(
    registry: Registry, symbol: str, shard_id: str, *, view: ClusterView | None = None
) -> PinResult:
    """Pin ``symbol`` to a live, non-draining shard; the controller moves it there."""
    view = await _view(registry, view)
    _require_symbol(view, symbol)
    _require_placeable(view, shard_id)
    await registry.set_pin(symbol, shard_id)
    return _pin_result(view, symbol, shard_id, {**view.pins, symbol: shard_id})


async def unpin(registry: Registry, symbol: str, *, view: ClusterView | None = None) -> PinResult:
    """Remove the pin: placement (rendezvous hashing) decides again and may move it."""
    view = await _view(registry, view)
    _require_symbol(view, symbol)
    if symbol in view.pins:
        await registry.set_pin(symbol, None)
    pins = {s: p for s, p in view.pins.items() if s != symbol}
    return _pin_result(view, symbol, "", pins)


def _pin_result(view: ClusterView, symbol: str, pinned: str, pins: dict[str, str]) -> PinResult:
    current = view.assignments.get(symbol)
    owner = current.shard_id if current is not None else ""
    desired = desired_owner(symbol, replace(view, pins=pins)) or ""
    will_move_to = desired if owner and desired != owner else ""
    return PinResult(symbol, pinned, view.pins.get(symbol, ""), owner, will_move_to)


# --- drains -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DrainResult:
    shard_id: str
    draining: bool
    was_draining: bool
    moves: list[Move] = field(default_factory=list)  # what the controller will move away
    warning: str = ""


async def drain(
    registry: Registry, shard_id: str, *, view: ClusterView | None = None
) -> DrainResult:
    """Mark a shard draining: no new symbols, and the controller moves its symbols away."""
    view = await _view(registry, view)
    _require_known_shard(view, shard_id)
    await registry.set_draining(shard_id, True)
    after = replace(view, draining=view.draining | {shard_id})
    moves = [m for m in plan_moves(after) if m.from_shard == shard_id]
    stuck = sum(1 for a in view.assignments.values() if a.shard_id == shard_id) - len(moves)
    warning = ""
    if not after.placeable_shards():
        warning = "no live shard is left to take new symbols"
    elif stuck > 0:
        warning = f"{stuck} symbol(s) stay: pinned to {shard_id} or in transit"
    return DrainResult(shard_id, True, shard_id in view.draining, moves, warning)


async def undrain(
    registry: Registry, shard_id: str, *, view: ClusterView | None = None
) -> DrainResult:
    """Clear the draining mark: the shard takes symbols again (hashing may move some back)."""
    view = await _view(registry, view)
    _require_known_shard(view, shard_id)
    await registry.set_draining(shard_id, False)
    after = replace(view, draining=view.draining - {shard_id})
    moves = [m for m in plan_moves(after) if m.to_shard == shard_id]
    return DrainResult(shard_id, False, shard_id in view.draining, moves)


# --- symbols ----------------------------------------------------------------------------


async def add_symbol(registry: Registry, symbol: str, *, view: ClusterView | None = None) -> str:
    """Add ``symbol`` to the catalog; returns the shard placement will give it ("" if none).

    The controller places it (LOADING on that shard, which then loads it and serves).
    """
    view = await _view(registry, view)
    if symbol in view.symbols:
        raise InvalidRequest(f"symbol {symbol!r} already exists")
    await registry.add_symbol(symbol)
    return desired_owner(symbol, view) or ""


# --- rebalance --------------------------------------------------------------------------


def plan_rebalance(view: ClusterView) -> list[Move]:
    """Moves that bring every ACTIVE assignment to its desired owner (pins, then hashing)."""
    return plan_moves(view)


@dataclass(frozen=True)
class RebalanceResult:
    applied: list[Move] = field(default_factory=list)
    conflicted: list[Move] = field(default_factory=list)  # changed since the plan's view


async def apply_rebalance(
    registry: Registry, moves: list[Move], view: ClusterView
) -> RebalanceResult:
    """Start each move of a plan made from ``view``: one CAS per symbol on its revision."""
    result = RebalanceResult()
    for planned in moves:
        current = view.assignments.get(planned.symbol)
        if current is None or current.shard_id != planned.from_shard:
            result.conflicted.append(planned)
            continue
        stored = await registry.cas_assignment(
            current.revision, current.moving_to(planned.to_shard)
        )
        (result.applied if stored is not None else result.conflicted).append(planned)
    return result


# --- status -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardStatus:
    shard_id: str
    address: str  # "" if the shard is not live
    live: bool
    draining: bool
    symbol_count: int
    symbols: list[str]  # assigned to it (ACTIVE, LOADING, or moving away), sorted


@dataclass(frozen=True)
class AssignmentStatus:
    symbol: str
    shard_id: str
    state: str  # "active", "moving", "loading"
    epoch: int
    target: str  # MOVING only
    pin: str  # "" if none


@dataclass(frozen=True)
class ClusterStatus:
    revision: int
    controller: str
    shards: list[ShardStatus]
    assignments: list[AssignmentStatus]
    unplaced: list[str]  # catalog symbols without an assignment yet


def status(view: ClusterView) -> ClusterStatus:
    """What an operator wants to see of ``view``, sorted for stable output."""
    by_shard: dict[str, list[str]] = {s: [] for s in known_shards(view)}
    for symbol in sorted(view.assignments):
        by_shard[view.assignments[symbol].shard_id].append(symbol)
    shards = [
        ShardStatus(
            shard_id,
            view.shards[shard_id].address if shard_id in view.shards else "",
            shard_id in view.shards,
            shard_id in view.draining,
            len(by_shard[shard_id]),
            by_shard[shard_id],
        )
        for shard_id in sorted(by_shard)
    ]
    assignments = [
        AssignmentStatus(s, a.shard_id, a.state.value, a.epoch, a.target, view.pins.get(s, ""))
        for s, a in sorted(view.assignments.items())
    ]
    unplaced = sorted(view.symbols - view.assignments.keys())
    return ClusterStatus(view.revision, view.controller, shards, assignments, unplaced)
