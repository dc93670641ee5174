"""Failpoints for fault tests: named places where a test can make the process crash or fail.

Enabled only through the SPOTMATCH_FAILPOINTS environment variable, e.g.
``before_commit=crash`` or ``after_commit=fail:3`` (fail on the third hit), read once at
import. In production the variable is unset and ``hit`` is a dictionary miss.
"""

from __future__ import annotations

import os

from .errors import PersistenceError

_ACTIONS: dict[str, tuple[str, int]] = {}
_HITS: dict[str, int] = {}


class FailpointError(PersistenceError):
    retriable = True


def configure(spec: str) -> None:
    _ACTIONS.clear()
    _HITS.clear()
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        kind, _, nth = action.partition(":")
        if kind not in ("crash", "fail"):
            raise ValueError(f"failpoint {name!r}: action must be crash or fail, got {kind!r}")
        _ACTIONS[name] = (kind, int(nth or 1))


def hit(name: str) -> None:
    action = _ACTIONS.get(name)
    if action is None:
        return
    count = _HITS[name] = _HITS.get(name, 0) + 1
    kind, nth = action
    if count < nth:
        return
    if kind == "crash":
        os._exit(137)  # like kill -9: no cleanup, no flush, nothing acknowledged after this
    if count == nth:
        raise FailpointError(f"failpoint {name} fired")


configure(os.environ.get("SPOTMATCH_FAILPOINTS", ""))
