"""A tiny `spotmatch bench cluster` end to end: a real local cluster (etcd, Postgres, Redis
Cluster, shards, a router) and the passthrough pair, all started and stopped by the command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
RUN_TIMEOUT = 240.0  # start-up of ~10 processes on 2 shared cores, then ~6 s of load

REQUIRED = {
    "target": str,
    "orders_per_sec": int,
    "p50_ms": float,
    "p99_ms": float,
    "errors": int,
    "raw_two_hop_orders_per_sec": int,
    "ratio": float,
    "unary_orders_per_sec": int,
    "unary_p99_ms": float,
    "missing_acks": int,
    "open_loop_rate": int,
    "open_loop_p99_ms": float,
    "runs": int,
    "md_lag_p50_ms": float,
    "md_lag_p99_ms": float,
    "orderbook_calls_per_sec": int,
    "md_throughput_ratio": float,
}


def test_a_tiny_run_prints_one_json_object_last(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    plot = tmp_path / "cluster.png"
    done = subprocess.run(
        [sys.executable, "-m", "spotmatch", "bench", "cluster", "--duration", "1",
         "--symbols", "2", "--shards", "2", "--routers", "1", "--clients", "2",
         "--unary-clients", "4", "--md-subscribers", "6", "--book-readers", "2", "--json",
         "--quiet", "--out", str(out), "--plot", str(plot)],
        cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3_000:] + done.stderr[-3_000:]
    last = done.stdout.strip().splitlines()[-1]
    result = json.loads(last)
    for key, kind in REQUIRED.items():
        allowed = (int, float) if kind is float else kind  # JSON may print 12.0 as 12
        assert isinstance(result[key], allowed), (key, result[key])
    assert result["target"] == "cluster"
    assert result["orders_per_sec"] > 0 and result["raw_two_hop_orders_per_sec"] > 0
    assert result["unary_orders_per_sec"] > 0
    (run,) = result["run_results"]  # the headline latency is the max run's, as in bench shard
    assert (result["p50_ms"], result["p99_ms"]) == (run["max"]["p50_ms"], run["max"]["p99_ms"])
    assert result["ratio"] == round(
        result["orders_per_sec"] / result["raw_two_hop_orders_per_sec"], 3
    )
    assert result["missing_acks"] == 0 and result["acked_orders"] > 0
    assert result["errors"] == 0, result["run_results"][0]
    # Market data: the subscribers followed the books without a gap and timed trades.
    assert result["md_gaps"] == 0 and result["md_failures"] == []
    assert result["run_results"][0]["md"]["trades_timed"] > 0
    assert result["md_lag_p99_ms"] >= result["md_lag_p50_ms"] > 0
    assert result["orderbook_calls_per_sec"] > 0
    # CPU per order, read from /proc, by kind of process; the subscribers only with them.
    assert {"router", "shard", "postgres"} <= result["cpu_us_per_order"].keys()
    assert result["cpu_us_per_order"]["shard"] > 0 and result["cpu_us_per_order"]["router"] > 0
    assert "subscribers" not in result["cpu_us_per_order"]
    assert result["md_cpu_us_per_order"]["subscribers"] > 0
    assert result["unary_cpu_us_per_order"]["router"] > 0
    assert result["unary_cpu_us_per_order"]["shard"] > 0
    assert result["run_results"][0]["orderbook"]["errors"] == 0
    measured = result["md_orders_per_sec"] / result["orders_per_sec"]
    assert abs(result["md_throughput_ratio"] - measured) < 0.002
    assert [b["t"] for b in run["timeline"]["max"]] == [0.0, 0.5]
    assert sum(b["orders"] for b in run["timeline"]["open_loop"]) > 0
    assert json.loads(out.read_text()) == result  # the results file holds the same object
    assert plot.read_bytes().startswith(b"\x89PNG")
