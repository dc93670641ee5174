"""Processes of a local cluster: spawning shard and router nodes, and stopping recorded pids.

Nodes run in their own session (``start_new_session``) so they outlive the `spotmatch up` that
started them and a Ctrl-C at its terminal does not reach them. Stopping goes by recorded pid,
but only after checking that the pid still names the process that was recorded (same kernel
start time): pids are reused, and signalling a stranger would be a bug.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tools.cluster.errors import LauncherError
from tools.cluster.state import ProcessRecord
from tools.services.ports import HOST, free_port
from tools.services.process import log_tail, pid_alive, track, untrack

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
HEALTH_TIMEOUT = 1.0  # one health Check call
POLL_INTERVAL = 0.1
STOP_GRACE = 20.0  # a shard commits in-flight batches and leaves the cluster on SIGTERM
KILL_WAIT = 5.0


def start_time(pid: int) -> int | None:
    """The kernel start time of ``pid`` (clock ticks after boot), None if there is no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # Fields after the parenthesised command name (which may contain spaces and parentheses);
    # starttime is field 22 of the whole line, the 20th after the name.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[19])


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def record(
    name: str, kind: str, pid: int, log_path: Path, address: str = "", metrics: str = ""
) -> ProcessRecord:
    started = start_time(pid)
    if started is None:
        raise LauncherError(f"{name} (pid {pid}) exited right after starting; see {log_path}")
    return ProcessRecord(name, kind, pid, started, cmdline(pid), str(log_path), address, metrics)


def is_same_process(rec: ProcessRecord) -> bool:
    """Whether rec.pid is still alive and still the very process that was recorded.

    A pid and its kernel start time identify a process for the whole uptime of the machine.
    The command line is recorded for people only: Redis and Postgres rewrite their titles."""
    return pid_alive(rec.pid) and start_time(rec.pid) == rec.start_time


class NodeProcess:
    """A shard or router node: `python -m <module> ...`, its output in a log file."""

    def __init__(
        self, name: str, kind: str, module: str, args: Sequence[str], address: str, log_dir: Path
    ) -> None:
        self.name, self.kind, self.address = name, kind, address
        self.metrics = f"{HOST}:{free_port()}"  # its Prometheus endpoint
        self.argv = [sys.executable, "-m", module, *args, "--metrics-listen", self.metrics]
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"NodeProcess({self.name!r}, pid={self.pid}, address={self.address!r})"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def spawn(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with self.log_path.open("ab") as out:
            out.write(f"$ {shlex.join(self.argv)}\n".encode())
            out.flush()
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    cwd=REPO,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise LauncherError(f"cannot start {self.name}: {exc}") from exc
        track(self)  # killed at interpreter exit unless detached
        log.debug("%s started: pid %d, log %s", self.name, self.proc.pid, self.log_path)

    def wait_serving(self, deadline: float) -> None:
        """Poll the gRPC health check until SERVING; LauncherError with the log tail if the
        process exits or the deadline passes."""
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if not self.is_running():
                    raise self.failure("exited while starting")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=HEALTH_TIMEOUT)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() >= deadline:
                    raise self.failure("not SERVING before the start deadline")
                time.sleep(POLL_INTERVAL)

    def failure(self, what: str) -> LauncherError:
        return LauncherError(
            f"{self.name} {what}\n--- last lines of {self.log_path} ---\n{log_tail(self.log_path)}"
        )

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` (e.g. SIGSTOP for a fault test); a no-op if it is not running."""
        if self.proc is not None and self.is_running():
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """kill -9: a crash. Reaps it."""
        if self.proc is not None and self.is_running():
            self.proc.kill()
            self.proc.wait(KILL_WAIT)
        untrack(self)

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM (after SIGCONT, in case a test paused it), SIGKILL past ``grace``."""
        if self.proc is not None and self.is_running():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %.0fs: killing it", self.name, grace)
        self.kill()

    def kill_for_exit(self) -> None:
        self.kill()

    def detach(self) -> None:
        """Let it outlive this interpreter (no kill at exit)."""
        untrack(self)

    def record(self) -> ProcessRecord:
        if self.proc is None:
            raise LauncherError(f"{self.name} was never started")
        return record(
            self.name, self.kind, self.proc.pid, self.log_path, self.address, self.metrics
        )


def stop_recorded(records: Sequence[ProcessRecord], sig: int, grace: float) -> list[str]:
    """Signal every recorded process that is still itself, wait up to ``grace`` for them to
    exit, SIGKILL the rest (with their process group when they lead one). Returns one line
    per process saying what happened."""
    notes: list[str] = []
    mine: list[ProcessRecord] = []
    for rec in records:
        if not pid_alive(rec.pid):
            notes.append(f"{rec.name}: already gone (pid {rec.pid})")
        elif not is_same_process(rec):
            notes.append(f"{rec.name}: pid {rec.pid} is now another program; not touched")
        elif _signal(rec.pid, sig):
            mine.append(rec)
        else:
            notes.append(f"{rec.name}: not allowed to signal pid {rec.pid}; stop it by hand")
    deadline = time.monotonic() + grace
    for rec in mine:
        while is_same_process(rec) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL)
        if is_same_process(rec):
            _kill_hard(rec)
            notes.append(f"{rec.name}: killed (pid {rec.pid}; ignored the stop signal)")
        else:
            notes.append(f"{rec.name}: stopped (pid {rec.pid})")
    return notes


def _signal(pid: int, sig: int) -> bool:
    """Send ``sig``; False if this user may not signal ``pid``."""
    try:
        os.kill(pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # exited meanwhile: the wait below sees it gone
    except PermissionError:
        return False
    return True


def _kill_hard(rec: ProcessRecord) -> None:
    try:
        if os.getpgid(rec.pid) == rec.pid:  # a session leader: take its children too
            os.killpg(rec.pid, signal.SIGKILL)
        else:
            os.kill(rec.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + KILL_WAIT
    while pid_alive(rec.pid) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
