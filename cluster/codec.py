"""The stored form of the cluster state, shared by both registries: key names and values.

Keys are relative to the registry's prefix (layout in cluster/registry.py). Values are strict:
anything that does not decode exactly raises MalformedValue, and readers keep their last good
value instead of acting on garbage (DESIGN section 11, "malformed etcd values").

- shards/<id>:          JSON {"shard_id", "address", "weight", "instance" (optional)};
                        shard_id must match the key
- assignments/<symbol>: JSON {"shard_id", "state", "epoch", "target"} (no symbol, no revision:
                        both come from the key). A stored epoch of 0 means "the revision of the
                        write that stored it" and is resolved to the key's mod_revision on read.
- pins/<symbol>:        the shard id as UTF-8 text
- controller:           the controller id as UTF-8 text
- drain/<id>, symbols/<symbol>: b"1"

Unknown JSON fields are ignored so that a newer writer does not blind older readers during a
rolling upgrade; missing fields, wrong types and unknown states are errors.
"""

from __future__ import annotations

import json
import math
from types import MappingProxyType
from typing import Any

from cluster.errors import InvalidRequest, MalformedValue
from cluster.model import (
    Assignment,
    AssignmentState,
    Change,
    ChangeKind,
    ClusterView,
    ShardRecord,
)

FLAG = b"1"
CONTROLLER_KEY = ChangeKind.CONTROLLER.value
_KINDS_BY_DIR = {k.value: k for k in ChangeKind if k is not ChangeKind.CONTROLLER}

Value = ShardRecord | Assignment | str | bool


def key_for(kind: ChangeKind, name: str = "") -> str:
    """The relative key of ``name`` under ``kind`` ("shards/s1"; "controller")."""
    if kind is ChangeKind.CONTROLLER:
        return CONTROLLER_KEY
    check_name(name)
    return f"{kind.value}/{name}"


def check_name(name: str) -> None:
    """Shard ids and symbols become key segments: non-empty, printable, no '/'."""
    if not _valid_name(name):
        raise InvalidRequest(f"invalid name {name!r}")


def _valid_name(name: str) -> bool:
    return bool(name) and "/" not in name and name.isprintable() and name.strip() == name


def parse_key(key: str) -> tuple[ChangeKind, str] | None:
    """(kind, name) of a relative key, or None for a key outside the layout (ignored). A name
    that ``check_name`` refuses is outside it too: such a key (written by hand or by another
    tool) must not stop a table that would fail on it every time it reads it."""
    if key == CONTROLLER_KEY:
        return ChangeKind.CONTROLLER, ""
    directory, sep, name = key.partition("/")
    kind = _KINDS_BY_DIR.get(directory)
    if kind is None or not sep or not _valid_name(name):
        return None
    return kind, name


def encode_shard(record: ShardRecord) -> bytes:
    check_name(record.shard_id)
    if not record.address or not _positive(record.weight):
        raise InvalidRequest(f"invalid shard record {record!r}")
    body: dict[str, object] = {
        "shard_id": record.shard_id,
        "address": record.address,
        "weight": record.weight,
    }
    if record.instance:
        body["instance"] = record.instance
    return json.dumps(body, separators=(",", ":")).encode()


def encode_assignment(assignment: Assignment) -> bytes:
    """The stored assignment; its ``revision`` is not stored (the key's mod_revision is)."""
    check_name(assignment.symbol)
    _check_assignment(assignment.shard_id, assignment.state, assignment.target, assignment.epoch)
    body = {
        "shard_id": assignment.shard_id,
        "state": assignment.state.value,
        "epoch": assignment.epoch,
        "target": assignment.target,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def encode_text(text: str) -> bytes:
    """A pin's shard id or the controller id."""
    check_name(text)
    return text.encode()


def decode(kind: ChangeKind, name: str, raw: bytes, mod_revision: int) -> Value:
    """The value stored under (kind, name); raises MalformedValue if it is not exactly valid."""
    try:
        if kind is ChangeKind.SHARD:
            return _decode_shard(name, raw)
        if kind is ChangeKind.ASSIGNMENT:
            return _decode_assignment(name, raw, mod_revision)
        if kind in (ChangeKind.PIN, ChangeKind.CONTROLLER):
            text = raw.decode()
            check_name(text)
            return text
        if raw != FLAG:
            raise MalformedValue(f"expected {FLAG!r}")
        return True
    except (ValueError, InvalidRequest, MalformedValue) as exc:  # UnicodeError is a ValueError
        raise MalformedValue(f"{key_for(kind, name)}: {exc} (value {raw[:80]!r})") from exc


def change_of(key: str, raw: bytes | None, mod_revision: int) -> Change | None:
    """The Change for a put (``raw``) or delete (None) of a relative key; None if ignored."""
    parsed = parse_key(key)
    if parsed is None:
        return None
    kind, name = parsed
    if raw is None:
        return Change(kind, name, None, mod_revision, deleted=True)
    try:
        value = decode(kind, name, raw, mod_revision)
    except MalformedValue:
        return Change(kind, name, None, mod_revision, malformed=True)
    return Change(kind, name, value, mod_revision)


def _decode_shard(name: str, raw: bytes) -> ShardRecord:
    body = _json_object(raw)
    shard_id = _field(body, "shard_id", str)
    address = _field(body, "address", str)
    weight = body.get("weight")
    if shard_id != name or not address:
        raise MalformedValue("shard_id does not match the key, or empty address")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not _positive(weight):
        raise MalformedValue("weight must be a positive number")
    instance = body.get("instance", "")
    if not isinstance(instance, str):
        raise MalformedValue("instance must be a string")
    return ShardRecord(shard_id, address, float(weight), instance)


def _decode_assignment(symbol: str, raw: bytes, mod_revision: int) -> Assignment:
    body = _json_object(raw)
    shard_id = _field(body, "shard_id", str)
    state = AssignmentState(_field(body, "state", str))  # ValueError on an unknown state
    epoch = _field(body, "epoch", int)
    target = _field(body, "target", str)
    try:
        _check_assignment(shard_id, state, target, epoch)
    except InvalidRequest as exc:
        raise MalformedValue(str(exc)) from exc
    if epoch > mod_revision:
        raise MalformedValue(f"epoch {epoch} is newer than the key's revision {mod_revision}")
    return Assignment(symbol, shard_id, state, epoch or mod_revision, target, mod_revision)


def _check_assignment(shard_id: str, state: AssignmentState, target: str, epoch: int) -> None:
    check_name(shard_id)
    if epoch < 0:
        raise InvalidRequest(f"negative epoch {epoch}")
    if (state is AssignmentState.MOVING) != bool(target):
        raise InvalidRequest(f"a {state.value} assignment with target {target!r}")
    if target:
        check_name(target)


def _json_object(raw: bytes) -> dict[str, Any]:
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise MalformedValue("not a JSON object")
    return body


def _field(body: dict[str, Any], name: str, kind: type[int] | type[str]) -> Any:
    value = body.get(name)
    # bool is an int in Python but never a valid epoch.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MalformedValue(f"field {name!r} must be {kind.__name__}")
    return value


def _positive(number: float) -> bool:
    return math.isfinite(number) and number > 0


class ViewBuilder:
    """A mutable copy of the cluster state, turned into immutable ClusterViews."""

    def __init__(self) -> None:
        self.shards: dict[str, ShardRecord] = {}
        self.draining: set[str] = set()
        self.symbols: set[str] = set()
        self.pins: dict[str, str] = {}
        self.assignments: dict[str, Assignment] = {}
        self.controller = ""
        self.malformed: set[str] = set()  # relative keys

    @classmethod
    def of(cls, view: ClusterView) -> ViewBuilder:
        builder = cls()
        builder.shards.update(view.shards)
        builder.draining.update(view.draining)
        builder.symbols.update(view.symbols)
        builder.pins.update(view.pins)
        builder.assignments.update(view.assignments)
        builder.controller = view.controller
        builder.malformed.update(view.malformed)
        return builder

    def add_kv(self, key: str, raw: bytes, mod_revision: int) -> None:
        """Add one stored key-value (a snapshot); a malformed one is only noted."""
        change = change_of(key, raw, mod_revision)
        if change is not None:
            self.apply(change)

    def apply(self, change: Change) -> None:
        """Apply a put or delete; a malformed value keeps the last good one (the caller logs)."""
        key = key_for(change.kind, change.name)
        if change.malformed:
            self.malformed.add(key)
            return
        self.malformed.discard(key)
        self._set(change.kind, change.name, None if change.deleted else change.value)

    def value(self, kind: ChangeKind, name: str) -> Value | None:
        """The current value of (kind, name), None if absent."""
        found: Value | None
        if kind is ChangeKind.SHARD:
            found = self.shards.get(name)
        elif kind is ChangeKind.DRAIN:
            found = True if name in self.draining else None
        elif kind is ChangeKind.SYMBOL:
            found = True if name in self.symbols else None
        elif kind is ChangeKind.PIN:
            found = self.pins.get(name)
        elif kind is ChangeKind.ASSIGNMENT:
            found = self.assignments.get(name)
        else:
            found = self.controller or None
        return found

    def set_value(self, kind: ChangeKind, name: str, value: Value | None) -> None:
        """Set (or with None remove) one value directly (used to carry last good values)."""
        self._set(kind, name, value)

    def view(self, revision: int) -> ClusterView:
        return ClusterView(
            revision=revision,
            shards=MappingProxyType(dict(self.shards)),
            draining=frozenset(self.draining),
            symbols=frozenset(self.symbols),
            pins=MappingProxyType(dict(self.pins)),
            assignments=MappingProxyType(dict(self.assignments)),
            controller=self.controller,
            malformed=frozenset(self.malformed),
        )

    def _set(self, kind: ChangeKind, name: str, value: Value | None) -> None:
        if kind is ChangeKind.SHARD:
            _store(self.shards, name, value if isinstance(value, ShardRecord) else None)
        elif kind is ChangeKind.DRAIN:
            _flag(self.draining, name, value is not None)
        elif kind is ChangeKind.SYMBOL:
            _flag(self.symbols, name, value is not None)
        elif kind is ChangeKind.PIN:
            _store(self.pins, name, value if isinstance(value, str) else None)
        elif kind is ChangeKind.ASSIGNMENT:
            _store(self.assignments, name, value if isinstance(value, Assignment) else None)
        else:
            self.controller = value if isinstance(value, str) else ""


def _store(mapping: dict[str, Any], name: str, value: object | None) -> None:
    if value is None:
        mapping.pop(name, None)
    else:
        mapping[name] = value


def _flag(names: set[str], name: str, present: bool) -> None:
    if present:
        names.add(name)
    else:
        names.discard(name)
