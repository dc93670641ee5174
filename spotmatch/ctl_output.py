"""What `spotmatch ctl` commands return and how it is shown: aligned tables or JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


class CtlError(Exception):
    """An operator error `spotmatch ctl` reports in one line on stderr (exit status 1)."""

    retriable = False


@dataclass(frozen=True)
class Output:
    data: Any  # JSON-serialisable, for --json
    text: str  # for people
    failure: str = ""  # set: printed on stderr after the output, exit status 1


def render(output: Output, as_json: bool) -> str:
    if as_json:
        return json.dumps(output.data, indent=2, sort_keys=True)
    return output.text


def cell(value: object) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Columns padded to their widest cell; empty values shown as "-"."""
    lines = [list(headers), *([cell(v) for v in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def one_line(message: str) -> str:
    """Driver messages can span lines (psycopg's do); stderr gets one."""
    return "; ".join(part.strip() for part in message.splitlines() if part.strip())
