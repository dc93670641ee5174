"""SIGTERM to a `spotmatch` command that started processes (here a shard bench: a private
Postgres and a shard process) stops them, as Ctrl-C does, instead of orphaning them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every live process (zombies are not)."""
    found: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # exited meanwhile
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if not fields["State"].strip().startswith("Z"):
            found[int(entry.name)] = (int(fields["PPid"]), cmdline)
    return found


def _started_by(bench: int, tmp: Path) -> dict[int, str]:
    """The bench's shard (its child) and its Postgres (daemonized by pg_ctl, so found by
    its data directory under ``tmp``)."""
    return {
        pid: cmd
        for pid, (ppid, cmd) in _processes().items()
        if (ppid == bench and "-m shard" in cmd) or (str(tmp) in cmd and "postgres" in cmd)
    }


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_sigterm_to_a_bench_stops_the_postgres_and_shard_it_started() -> None:
    # Short: Postgres's socket path under it must fit 107 bytes (pytest's tmp_path is long).
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="sm-term-") as tmp:
        _sigterm_a_bench(Path(tmp))


def _sigterm_a_bench(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "spotmatch", "bench", "shard", "--quiet", "--duration", "20"]
    argv += ["--max-rate", "2000", "--out", str(tmp_path / "result.json")]
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the bench's private directory goes here
    bench = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        started: dict[int, str] = {}
        while time.monotonic() < deadline and bench.poll() is None:
            started = _started_by(bench.pid, tmp_path)
            if any("-m shard" in c for c in started.values()) and len(started) >= 2:
                break
            time.sleep(0.1)
        if bench.poll() is not None:
            err = bench.communicate()[1].decode()
            raise AssertionError(f"the bench ended before its shard started: {err}")
        assert len(started) >= 2, started
        bench.send_signal(signal.SIGTERM)
        err = bench.communicate(timeout=60)[1].decode()
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
    assert bench.returncode == 130, err
    assert "interrupted" in err
    left = started
    for _ in range(100):  # what the bench killed on its way out may take a moment to go
        left = {pid: cmd for pid, (_, cmd) in _processes().items() if pid in started}
        if not left:
            break
        time.sleep(0.1)
    assert left == {}, f"still running 10 s after the bench exited: {left}"
