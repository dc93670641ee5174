"""`spotmatch ctl` end to end against a real etcd and Postgres, run in-process.

No shard runs here (tests/spotmatch/test_up_down.py has a whole cluster): shards are
registered under real leases by the test, one of them with a real gRPC health service, and no
controller acts, so every change the CLI makes stays visible as it wrote it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from cluster.etcd import EtcdRegistry
from cluster.model import Assignment, AssignmentState, ShardRecord
from spotmatch import ctl_cli
from tools.services import EtcdServer, free_port

PREFIX = "/ctl-test/"
TTL = 30  # refreshed by the test's registry while the test runs


@dataclass
class Env:
    registry: EtcdRegistry
    argv: list[str]  # the connection flags
    dsn: str
    capsys: pytest.CaptureFixture[str]

    async def ctl(self, *args: str) -> tuple[int, str, str]:
        """Run `spotmatch ctl <flags> ARGS` in a thread (it runs its own event loop)."""
        code = await asyncio.to_thread(_main, [*self.argv, *args])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    async def place(self, symbol: str, shard_id: str) -> None:
        await self.registry.add_symbol(symbol)
        assert await self.registry.create_assignment(
            Assignment(symbol, shard_id, AssignmentState.ACTIVE)
        )


def _main(argv: list[str]) -> int:
    try:
        return ctl_cli.main(argv)
    except SystemExit as exc:  # argparse: usage errors
        return int(exc.code or 0)


@pytest.fixture
async def health_server() -> AsyncIterator[str]:
    """A gRPC server whose health service says SERVING, as a live shard's does."""
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    yield f"127.0.0.1:{port}"
    await server.stop(None)


@pytest.fixture
async def env(
    etcd_server: EtcdServer,
    pg_dsn: str,
    health_server: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> AsyncIterator[Env]:
    registry = EtcdRegistry([etcd_server.endpoint], prefix=PREFIX, timeout=5.0)
    await registry.connect()
    addresses = {"a": health_server, "b": f"127.0.0.1:{free_port()}", "c": "127.0.0.1:1"}
    registrations = [
        await registry.register_shard(ShardRecord(shard_id, address), TTL)
        for shard_id, address in addresses.items()
    ]
    argv = ["--etcd", etcd_server.endpoint, "--etcd-prefix", PREFIX, "--pg-dsn", pg_dsn]
    argv += ["--run-dir", str(tmp_path / "no-cluster-here")]
    yield Env(registry, argv, pg_dsn, capsys)
    for registration in registrations:
        await registration.close()
    await registry.close()


async def test_status_table_and_json(env: Env) -> None:
    await env.place("BTC-USD", "a")
    await env.registry.add_symbol("NEW-USD")
    await env.registry.set_pin("BTC-USD", "a")
    code, out, err = await env.ctl("status")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("SHARD"))
    assert header.split() == ["SHARD", "ADDRESS", "HEALTH", "DRAINING", "SYMBOLS"]
    row_a = next(line for line in lines if line.startswith("a "))
    assert row_a.split()[2:] == ["SERVING", "no", "1"]
    assert next(line for line in lines if line.startswith("b ")).split()[2] == "UNREACHABLE"
    btc = next(line for line in lines if line.startswith("BTC-USD"))
    assert btc.split()[1:3] == ["a", "active"]
    assert btc.split()[-1] == "a"  # the pin
    assert "waiting for placement: NEW-USD" in out

    code, out, _ = await env.ctl("status", "--json")  # flags after the command work too
    assert code == 0
    data = json.loads(out)
    health = {s["shard_id"]: s["health"] for s in data["shards"]}
    assert health == {"a": "SERVING", "b": "UNREACHABLE", "c": "UNREACHABLE"}
    (assignment,) = data["assignments"]
    assert (assignment["symbol"], assignment["shard_id"], assignment["state"]) == (
        "BTC-USD",
        "a",
        "active",
    )
    assert assignment["epoch"] > 0
    assert data["unplaced"] == ["NEW-USD"]


async def test_symbols_add_creates_reference_data_and_catalog_entry(env: Env) -> None:
    code, out, err = await env.ctl("symbols", "add", "BTC-USD", "--tick-size", "5")
    assert code == 2  # --lot-size is required: a usage error
    assert "--lot-size" in err
    code, out, err = await env.ctl(
        "symbols", "add", "BTC-USD", "--tick-size", "5", "--lot-size", "10", "--min-qty", "20"
    )
    assert (code, err) == (0, "")
    assert "added BTC-USD" in out
    async with await psycopg.AsyncConnection.connect(env.dsn) as conn:
        cur = await conn.execute(
            "SELECT tick_size, lot_size, min_quantity, status FROM symbols WHERE symbol = %s",
            ("BTC-USD",),
        )
        assert await cur.fetchone() == (5, 10, 20, 1)
    assert "BTC-USD" in (await env.registry.snapshot()).symbols

    code, _, err = await env.ctl(
        "symbols", "add", "BTC-USD", "--tick-size", "5", "--lot-size", "10"
    )
    assert code == 1
    assert err == "spotmatch ctl: symbol 'BTC-USD' already exists\n"
    code, _, err = await env.ctl("symbols", "add", "ETH-USD", "--tick-size", "0", "--lot-size", "1")
    assert code == 1
    assert "--tick-size must be a positive" in err

    code, out, _ = await env.ctl("--json", "symbols", "list")
    assert code == 0
    (listed,) = json.loads(out)
    assert (listed["symbol"], listed["status"], listed["state"]) == (
        "BTC-USD",
        "TRADING",
        "unplaced",
    )


async def test_pin_unpin_and_drain(env: Env) -> None:
    await env.place("BTC-USD", "a")
    code, out, _ = await env.ctl("pin", "BTC-USD", "b")
    assert code == 0
    assert "the controller moves it there from a" in out
    assert (await env.registry.snapshot()).pins == {"BTC-USD": "b"}
    code, out, _ = await env.ctl("unpin", "BTC-USD")
    assert code == 0
    assert "was pinned to b" in out
    assert (await env.registry.snapshot()).pins == {}

    code, out, _ = await env.ctl("drain", "a")
    assert code == 0
    assert "a is draining" in out
    assert (await env.registry.snapshot()).draining == frozenset({"a"})
    code, out, _ = await env.ctl("rebalance", "--dry-run", "--json")
    assert code == 0
    plan = json.loads(out)["plan"]
    assert [(m["symbol"], m["from_shard"], m["reason"]) for m in plan] == [
        ("BTC-USD", "a", "drain")
    ]
    still = await env.registry.get_assignment("BTC-USD")
    assert still is not None
    assert still.state is AssignmentState.ACTIVE  # a dry run changes nothing
    code, out, _ = await env.ctl("rebalance", "--apply")
    assert code == 0
    moved = await env.registry.get_assignment("BTC-USD")
    assert moved is not None
    assert (moved.state, moved.target) == (AssignmentState.MOVING, plan[0]["to_shard"])

    code, _, err = await env.ctl("drain", "zz")
    assert code == 1
    assert "unknown shard 'zz'" in err
    code, _, _ = await env.ctl("undrain", "a")
    assert code == 0
    assert (await env.registry.snapshot()).draining == frozenset()


async def test_move_refusals_and_concurrent_moves(env: Env) -> None:
    await env.place("BTC-USD", "a")
    code, _, err = await env.ctl("move", "BTC-USD", "--to", "a")
    assert (code, err) == (1, "spotmatch ctl: symbol 'BTC-USD' is already on 'a'\n")
    results = await asyncio.gather(
        asyncio.to_thread(_main, [*env.argv, "move", "BTC-USD", "--to", "b"]),
        asyncio.to_thread(_main, [*env.argv, "move", "BTC-USD", "--to", "c"]),
    )
    err = env.capsys.readouterr().err
    assert sorted(results) == [0, 1]  # exactly one move wins
    assert "conflict" in err or "is moving to" in err
    stored = await env.registry.get_assignment("BTC-USD")
    assert stored is not None
    assert stored.state is AssignmentState.MOVING
    winner = "b" if results[0] == 0 else "c"
    assert stored.target == winner
    assert (await env.registry.snapshot()).pins == {"BTC-USD": winner}
    code, _, err = await env.ctl("move", "BTC-USD", "--to", "c")
    assert code == 1
    assert "is moving to" in err


async def test_operator_errors_are_one_line_with_exit_status_1(env: Env) -> None:
    for args, message in (
        (("symbols", "halt", "NOPE"), "unknown symbol 'NOPE'"),
        (("move", "NOPE", "--to", "a"), "unknown symbol 'NOPE'"),
        (("pin", "NOPE", "a"), "unknown symbol 'NOPE'"),
    ):
        code, out, err = await env.ctl(*args)
        assert (code, out) == (1, "")
        assert err == f"spotmatch ctl: {message}\n"
    code, _, _ = await env.ctl("rebalance")  # neither --dry-run nor --apply
    assert code == 2


async def test_unreachable_etcd(env: Env, tmp_path: Path) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    argv = ["--etcd", nowhere, "--run-dir", str(tmp_path), "status"]
    code = await asyncio.to_thread(_main, argv)
    err = env.capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"spotmatch ctl: cannot reach etcd at {nowhere}")
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_python_m_spotmatch_ctl_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "spotmatch", "ctl", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for command in ("status", "symbols", "move", "pin", "unpin", "drain", "undrain", "rebalance"):
        assert command in done.stdout
