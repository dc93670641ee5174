"""`make run` is `spotmatch demo`: a short run of it, end to end, in its own run directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 240.0  # ~10 processes start on 2 shared cores, then 3 s of trading


def test_the_demo_trades_moves_a_symbol_and_checks_everything(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "spotmatch", "demo", "--no-wait", "--duration", "3",
         "--run-dir", str(tmp_path / "demo")],
        cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out[-3_000:] + done.stderr[-3_000:]
    assert re.search(r"[\d,]+ orders in [\d.]+ s = [\d,]+ orders/s", out), out
    found, acked = re.search(r"durability: ([\d,]+) of ([\d,]+) acknowledged", out).groups()  # type: ignore[union-attr]
    assert found == acked and acked != "0", out
    assert re.search(r"planned move of BTC-USD: shard-\d -> shard-\d, completed", out), out
    assert "book equals the owner's committed book" in out and ", 0 gaps)" in out, out
    assert "book via router-2: bid" in out, out  # the live market data line
    assert "SYMBOL   SHARD" in out  # the status table
    # Authentication (decision 0018): both refusals are shown, as the router gave them.
    assert "without a token -> UNAUTHENTICATED" in out, out
    assert "account 'someone-else' -> PERMISSION_DENIED" in out, out
    assert _processes_using(tmp_path) == [], "the demo left processes behind"


def _processes_using(directory: Path) -> list[str]:
    """Command lines of live processes that name ``directory`` (etcd, Postgres and Redis are
    started with their data directories under the run directory)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited meanwhile
        if str(directory) in text:
            found.append(text)
    return found
