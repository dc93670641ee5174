"""A tiny `spotmatch bench shard` end to end (a private Postgres and a shard process, started
and stopped by the command), and the CPU meter it uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.bench.cpu import CpuMeter, tree_cpu_seconds

REPO = Path(__file__).resolve().parents[3]
RUN_TIMEOUT = 240.0


# Burns a fixed 0.3 s of CPU, says so, then waits (so it is still a child when measured).
_BURN = (
    "import sys, time\n"
    "t = time.process_time()\n"
    "while time.process_time() - t < 0.3: pass\n"
    "print('done', flush=True)\n"
    "sys.stdin.read()\n"
)


def test_the_meter_counts_a_process_and_its_children() -> None:
    meter = CpuMeter({"me": os.getpid()})
    meter.start()
    child = subprocess.Popen(
        [sys.executable, "-c", _BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "done\n"
        spent = meter.stop()["me"]
    finally:
        child.kill()
        child.wait()
    # The child's burn is in it, however loaded the box; /proc counts whole clock ticks, for
    # user and system time apiece, so up to a tick of each (and float rounding) is not seen.
    assert spent >= 0.3 - 2.5 / os.sysconf("SC_CLK_TCK"), spent
    assert tree_cpu_seconds(os.getpid()) > 0


@pytest.mark.integration
def test_a_tiny_run_prints_one_json_object_last(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, "-m", "spotmatch", "bench", "shard", "--duration", "1", "--clients",
         "2", "--max-rate", "20000", "--json", "--quiet", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3_000:] + done.stderr[-3_000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["target"] == "shard"
    for key in ("orders_per_sec", "p50_ms", "p99_ms", "errors", "engine_orders_per_sec"):
        assert isinstance(result[key], int | float), key
    assert result["orders_per_sec"] > 0 and result["errors"] == 0
    assert result["missing_acked_orders"] == 0 and result["acked_orders"] > 0
    for phase in (result, result["open_loop"]):
        cpu = phase["cpu_us_per_order"]
        assert cpu["shard"] > 0 and cpu["postgres"] > 0, cpu
    assert result["recovery_s"] > 0
    assert json.loads(out.read_text()) == result
