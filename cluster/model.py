"""The cluster's shared state: live shards, drains, the symbol catalog, pins, assignments.

An assignment names the shard that owns a symbol and the Postgres fencing epoch of that
ownership. The epoch is the etcd mod_revision of the write that made the shard the owner
(DESIGN section 4): it only grows, so a newer owner always fences an older one.

States (one key per symbol, so there is never more than one owner):
- ACTIVE:  ``shard_id`` serves the symbol under ``epoch``.
- MOVING:  ``shard_id`` still owns it but is handing it to ``target``: routers buffer the
  symbol's commands, the owner commits what it has in flight, stops, and writes LOADING.
- LOADING: ``shard_id`` is the new owner: it fences in Postgres with ``epoch``, loads the
  book and writes ACTIVE with the same epoch. Routers keep buffering.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum


class AssignmentState(Enum):
    ACTIVE = "active"
    MOVING = "moving"
    LOADING = "loading"


@dataclass(frozen=True)
class ShardRecord:
    """A live shard, as registered under its lease."""

    shard_id: str
    address: str  # host:port of its ShardService / OrderGatewayService
    weight: float = 1.0  # relative capacity for weighted rendezvous placement
    # Differs per process start: a shard restarted within its lease's TTL re-registers
    # the same key, and only this tells the controller it is new (decision 0017).
    instance: str = ""


@dataclass(frozen=True)
class Assignment:
    symbol: str
    shard_id: str
    state: AssignmentState
    # Fencing epoch of shard_id's ownership. When writing, 0 means "a new ownership starts
    # with this write": the stored epoch becomes the write's own revision. Assignments read
    # back from a registry always carry the resolved (non-zero) epoch.
    epoch: int = 0
    target: str = ""  # MOVING only: the shard it goes to
    revision: int = 0  # the key's mod_revision when read (the compare-and-swap token)

    def routable(self) -> bool:
        """Routers send commands only to an ACTIVE owner; otherwise they buffer."""
        return self.state is AssignmentState.ACTIVE

    def moving_to(self, target: str) -> Assignment:
        return replace(self, state=AssignmentState.MOVING, target=target, revision=0)

    def handed_to(self, shard_id: str) -> Assignment:
        """The LOADING assignment that starts ``shard_id``'s new ownership."""
        return Assignment(self.symbol, shard_id, AssignmentState.LOADING)

    def activated(self) -> Assignment:
        return replace(self, state=AssignmentState.ACTIVE, target="", revision=0)


@dataclass(frozen=True)
class ClusterView:
    """A consistent read of the whole cluster state at ``revision``."""

    revision: int = 0
    shards: Mapping[str, ShardRecord] = field(default_factory=dict)
    draining: frozenset[str] = frozenset()
    symbols: frozenset[str] = frozenset()  # the catalog of symbols to place
    pins: Mapping[str, str] = field(default_factory=dict)  # symbol -> shard id
    assignments: Mapping[str, Assignment] = field(default_factory=dict)
    controller: str = ""  # id of the elected controller, "" if none
    # Keys (relative to the prefix, e.g. "assignments/BTC-USD") present but undecodable: a
    # watched table keeps its last good value for them across a full resync.
    malformed: frozenset[str] = frozenset()

    def placeable_shards(self) -> dict[str, ShardRecord]:
        """Live shards that take new symbols (not draining)."""
        return {s: r for s, r in self.shards.items() if s not in self.draining}


class ChangeKind(Enum):
    SHARD = "shards"
    DRAIN = "drain"
    SYMBOL = "symbols"
    PIN = "pins"
    ASSIGNMENT = "assignments"
    CONTROLLER = "controller"


@dataclass(frozen=True)
class Change:
    """One watched key change. ``value`` is the decoded value (None when deleted or
    malformed); ``malformed`` marks a value that could not be decoded: consumers keep the
    last good value and log it."""

    kind: ChangeKind
    name: str  # shard id / symbol; "" for the controller key
    value: ShardRecord | Assignment | str | bool | None
    revision: int  # mod_revision of this change
    deleted: bool = False
    malformed: bool = False
