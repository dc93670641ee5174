"""Servers left running by a process that exits without stopping them are killed at exit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tools.services.process import pid_alive

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]

LEAKY_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from tools.services import EtcdServer, PostgresServer

    base = Path(sys.argv[1])
    pg = PostgresServer(base / "pg")
    pg.start()
    etcd = EtcdServer(base / "etcd")
    etcd.start()
    sys.stdout.write(json.dumps([pg.pid, etcd.pid]))
    # exits without stop(): the atexit safety net must kill both
    """
)


def test_servers_left_running_are_killed_at_exit(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", LEAKY_SCRIPT, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pids = json.loads(done.stdout)
    assert all(isinstance(pid, int) for pid in pids)
    deadline = time.monotonic() + 5
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(pid) for pid in pids)
    assert "still running at interpreter exit" in done.stderr
