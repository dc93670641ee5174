"""Process logs: one line per record, text for people or JSON lines for a log collector.

DESIGN section 9 asks for structured logs carrying shard, symbol and seq. Every record names
the node that wrote it (a shard's or router's id); a log call adds what it is about as
``extra={"symbol": ..., "seq": ..., "epoch": ...}``, which the JSON form carries as fields
and the text form appends as ``key=value``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

FORMATS = ("text", "json")
CONTEXT = ("symbol", "seq", "epoch")  # the fields a log call may add with ``extra``
_TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonLines(logging.Formatter):
    """One JSON object per record: ts (UTC, ms), level, logger, node, msg, the context
    fields present, and exc (the traceback) if any."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self._node = node

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, object] = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "node": self._node,
            "msg": record.getMessage(),
        }
        line.update(_context(record))
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextLines(logging.Formatter):
    """The familiar text line, with the node and the context fields appended."""

    def __init__(self, node: str) -> None:
        super().__init__(_TEXT)
        self._suffix = f" node={node}" if node else ""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = "".join(f" {k}={v}" for k, v in _context(record).items())
        head, newline, rest = text.partition("\n")  # a traceback stays below its line
        return f"{head}{self._suffix}{fields}{newline}{rest}"


def _context(record: logging.LogRecord) -> dict[str, object]:
    return {k: record.__dict__[k] for k in CONTEXT if record.__dict__.get(k) is not None}


def setup_logging(level: str, fmt: str = "text", node: str = "") -> None:
    """Send every record at ``level`` or above to stderr in ``fmt`` (one of FORMATS)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines(node) if fmt == "json" else TextLines(node))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--log-level and --log-format, defaulting to SPOTMATCH_LOG_LEVEL / SPOTMATCH_LOG_FORMAT."""
    parser.add_argument(
        "--log-level",
        default=os.environ.get("SPOTMATCH_LOG_LEVEL", "INFO"),
        help="logging level (env SPOTMATCH_LOG_LEVEL; default INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default=os.environ.get("SPOTMATCH_LOG_FORMAT", "text"),
        help="text lines, or JSON lines with node, symbol, seq and epoch as fields"
        " (env SPOTMATCH_LOG_FORMAT; default text)",
    )
