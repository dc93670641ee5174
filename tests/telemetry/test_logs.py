"""Process logs (telemetry/logs.py): JSON lines and text lines carry the node and what a
record is about; a real shard process logs JSON lines that a collector can parse."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from telemetry.logs import JsonLines, TextLines, setup_logging
from tests.shard.support import SYMBOLS, prepare_db
from tools.services.shard_process import ShardProcess


def _record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            info = sys.exc_info()
    record = logging.LogRecord("shard.pipeline", logging.WARNING, __file__, 1, msg, args, info)
    record.__dict__.update(extra)
    return record


def test_a_json_line_has_the_node_the_message_and_the_context_given() -> None:
    line = JsonLines("shard-2").format(_record("took %d orders", 12, symbol="BTC-USD", seq=7))
    parsed = json.loads(line)
    assert parsed.pop("ts").endswith("Z")
    assert parsed == {"level": "WARNING", "logger": "shard.pipeline", "node": "shard-2",
                      "msg": "took 12 orders", "symbol": "BTC-USD", "seq": 7}  # fmt: skip


def test_a_json_line_carries_a_traceback_as_one_field() -> None:
    parsed = json.loads(JsonLines("r-1").format(_record("failed", exc=True)))
    assert "RuntimeError: boom" in parsed["exc"]
    assert "symbol" not in parsed


def test_a_text_line_appends_the_node_and_context_before_any_traceback() -> None:
    text = TextLines("shard-1").format(_record("fenced", exc=True, symbol="ETH-USD", epoch=4))
    first, *rest = text.splitlines()
    assert first.endswith("WARNING shard.pipeline fenced node=shard-1 symbol=ETH-USD epoch=4")
    assert rest[0].startswith("Traceback") and rest[-1] == "RuntimeError: boom"


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text, json"):
        setup_logging("INFO", "xml")


@pytest.mark.integration
async def test_a_shard_started_with_json_logs_writes_only_json_lines(
    pg_dsn: str, tmp_path: Path
) -> None:
    await prepare_db(pg_dsn)
    shard = ShardProcess(pg_dsn, tmp_path, SYMBOLS, "json-1", extra_args=("--log-format", "json"))
    shard.start()
    assert shard.stop() == 0
    lines = shard.log_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line parses
    assert records and {r["node"] for r in records} == {"json-1"}
    took = [r for r in records if r["msg"].startswith("took the symbol")]
    assert sorted(r["symbol"] for r in took) == sorted(SYMBOLS)
    assert all(r["epoch"] >= 1 and r["seq"] == 0 for r in took)
