"""Columns of strings passed to one statement as a table: ``unnest(...) AS k(...)``.

Each column travels as one string split in SQL: one C-level join here instead of psycopg's
per-element array dumping, for every batch. The separator is a control character, which
ids do not hold (the edge refuses them); columns where one does go as arrays instead, as
does a column of one empty string (which splits into no element at all).
"""

from __future__ import annotations

from collections.abc import Sequence

_SEP = "\x1f"
_SPLIT = "string_to_array(%s, E'\\x1f')"
_ARRAY = "%s::text[]"


def unnest_texts(columns: Sequence[Sequence[str]]) -> tuple[str, tuple[object, ...]]:
    """The FROM item ``unnest(...)`` for equally long ``columns``, and its parameters."""
    joined = [_SEP.join(column) for column in columns]
    separators = len(columns[0]) - 1
    if all(text and text.count(_SEP) == separators for text in joined):
        return _unnest(_SPLIT, len(columns)), tuple(joined)
    return _unnest(_ARRAY, len(columns)), tuple(list(column) for column in columns)


def _unnest(item: str, count: int) -> str:
    return "unnest(" + ", ".join([item] * count) + ")"
