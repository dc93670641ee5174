"""`spotmatch up` / `spotmatch down`: a whole local cluster (etcd, Postgres, Redis Cluster,
two shards, one router) started, operated with `spotmatch ctl`, and stopped."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from spotmatch import ctl_cli, up_cli
from tests.scrape import scrape
from tools.cluster.processes import is_same_process
from tools.cluster.state import ClusterState, read_state

HEALTH_TIMEOUT = 5.0


def _health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=HEALTH_TIMEOUT)
        status: int = reply.status
        return status


def _ctl(run_dir: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = ctl_cli.main(["--run-dir", str(run_dir), *args])
    captured = capsys.readouterr()
    assert captured.err == ""
    return code, captured.out


def _metric(cluster: ClusterState, kind: str, name: str, **labels: str) -> float:
    """The sum of one sample over every process of ``kind``, scraped from its endpoint."""
    total = 0.0
    for process in (p for p in cluster.processes if p.kind == kind):
        host, port = process.metrics.rsplit(":", 1)
        assert host == "127.0.0.1", process
        for (sample, sample_labels), value in scrape(int(port)).items():
            if sample == name and labels.items() <= dict(sample_labels).items():
                total += value
    return total


def _check_status(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _ctl(run_dir, capsys, "status", "--json")
    assert code == 0
    status = json.loads(out)
    assert {s["shard_id"]: s["health"] for s in status["shards"]} == {
        "shard-1": "SERVING",
        "shard-2": "SERVING",
    }
    assert {a["symbol"]: a["state"] for a in status["assignments"]} == {
        "BTC-USD": "active",
        "ETH-USD": "active",
    }
    assert status["controller"] in {"shard-1", "shard-2"}


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_up_status_halt_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    up = ["up", "--run-dir", str(run_dir), "--shards", "2", "--routers", "1"]
    up += ["--symbols", "BTC-USD,ETH-USD", "--timeout", "120"]
    state = None
    try:
        assert up_cli.main(up) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        state = read_state(run_dir)
        assert state is not None
        assert out.index(state.router_addresses[0]) < out.index(state.shard_addresses[0])
        nodes = [p for p in state.processes if p.kind in {"shard", "router"}]
        assert all(f"{p.name} http://{p.metrics}/metrics" in out for p in nodes), out
        assert len(state.router_addresses) == 1
        assert len(state.shard_addresses) == 2
        for address in (*state.router_addresses, *state.shard_addresses):
            assert _health(address) == health_pb2.HealthCheckResponse.SERVING, address

        _check_status(run_dir, capsys)
        assert _metric(state, "shard", "spotmatch_shard_symbols", state="serving") == 2
        assert _metric(state, "router", "spotmatch_router_links_ready") == 2
        assert _metric(state, "shard", "spotmatch_shard_commands_total") == 0
        wrong = tmp_path / "wrong.token"  # shards take only the cluster's token (0018)
        wrong.write_text("not-the-cluster-token-0123456789\n")
        halt = ["--run-dir", str(run_dir), "symbols", "halt", "BTC-USD"]
        assert ctl_cli.main([*halt, "--cluster-token-file", str(wrong)]) == 1
        assert "UNAUTHENTICATED" in capsys.readouterr().err
        code, out = _ctl(run_dir, capsys, "symbols", "halt", "BTC-USD", "--reason", "test")
        assert code == 0
        assert out.startswith("halted BTC-USD on shard-")
        assert _metric(state, "shard", "spotmatch_shard_commands_total") == 1  # the halt
        code, out = _ctl(run_dir, capsys, "--json", "symbols", "list")
        assert {s["symbol"]: s["status"] for s in json.loads(out)} == {
            "BTC-USD": "HALTED",  # committed: the shard's batch wrote it to Postgres
            "ETH-USD": "TRADING",
        }

        assert up_cli.main(up) == 1  # twice without down
        assert "already running" in capsys.readouterr().err
    finally:
        down_code = up_cli.main(["down", "--run-dir", str(run_dir)])
    out = capsys.readouterr().out
    assert down_code == 0
    assert "cluster stopped" in out
    assert state is not None
    assert all(not is_same_process(p) for p in state.processes)
    assert {p.kind for p in state.processes} == {"router", "shard", "redis", "etcd", "postgres"}
    assert read_state(run_dir) is None
    assert up_cli.main(["down", "--run-dir", str(run_dir)]) == 0
    assert "nothing is running" in capsys.readouterr().out
