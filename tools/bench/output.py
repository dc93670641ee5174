"""How benchmarks talk: a progress line on stderr, a results file, JSON as the last line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


class Progress:
    """One updating status line on a terminal; plain lines otherwise (CI logs)."""

    def __init__(self, quiet: bool = False) -> None:
        self._tty = sys.stderr.isatty()
        self._quiet = quiet

    def update(self, text: str) -> None:
        if self._quiet:
            return
        if self._tty:
            sys.stderr.write("\r\033[K" + text)
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self._tty and not self._quiet:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def write_result(result: dict[str, Any], out: Path | None, as_json: bool, lines: list[str]) -> Path:
    """Print the human summary (and the JSON last when asked) and save the result file."""
    path = (
        out or Path("bench-results") / f"{result['target']}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    for line in lines:
        print(line)
    print(f"results written to {path}")
    if as_json:
        print(json.dumps(result, separators=(",", ":")))
    return path
