"""Shared machinery of the service launchers: binaries, logs, child processes, deadlines.

Every server a launcher starts has its output in a log file in its run directory; every wait
has a deadline and fails with a `ServiceError` that quotes the tail of that log. Anything still
running at interpreter exit that this process started is killed by an `atexit` safety net.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Protocol

log = logging.getLogger(__name__)

INSTALL_HINT = "run `make install` (installs PostgreSQL, etcd and Redis with apt-get)"
POLL_INTERVAL = 0.05
LOG_TAIL_LINES = 25
STOP_TIMEOUT = 10.0


class ServiceError(Exception):
    """Root of tools.services' errors: a local server could not be started, reached or stopped."""

    retriable = False


class MissingBinaryError(ServiceError):
    """A server binary is not installed on this machine."""


class Killable(Protocol):
    """Something the exit safety net can kill: it must not raise and must not block for long."""

    def kill_for_exit(self) -> None: ...


_live: dict[int, Killable] = {}
_live_lock = threading.Lock()


def track(obj: Killable) -> None:
    """Have the atexit safety net kill `obj` unless it is untracked before exit."""
    with _live_lock:
        _live[id(obj)] = obj


def untrack(obj: Killable) -> None:
    with _live_lock:
        _live.pop(id(obj), None)


@atexit.register
def _kill_leftovers() -> None:
    with _live_lock:
        leftovers = list(_live.values())
        _live.clear()
    for obj in leftovers:
        log.warning("killing %r: still running at interpreter exit", obj)
        with contextlib.suppress(Exception):
            obj.kill_for_exit()


def find_binary(name: str, extra_dirs: Sequence[Path] = ()) -> Path:
    """The path of an installed server binary; `MissingBinaryError` naming the fix if absent."""
    for directory in extra_dirs:
        candidate = directory / name
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found is None:
        raise MissingBinaryError(f"{name} is not installed: {INSTALL_HINT}")
    return Path(found)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log file, or a note saying why there are none."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16_384))
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(no log at {path}: {e.strerror})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else f"(log {path} is empty)"


def service_error(message: str, log_path: Path) -> ServiceError:
    return ServiceError(f"{message}\n--- last lines of {log_path} ---\n{log_tail(log_path)}")


def wait_until(
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    log_path: Path,
    alive: Callable[[], bool] | None = None,
) -> float:
    """Poll `ready` until it is true; return the seconds it took.

    Raises `ServiceError` with the log's tail on timeout, or at once if `alive` says the
    server has exited. Exceptions from `ready` count as "not ready yet".
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        with contextlib.suppress(Exception):
            if ready():
                return time.monotonic() - start
        if alive is not None and not alive():
            raise service_error(f"{what}: the server exited while starting", log_path)
        if time.monotonic() >= deadline:
            raise service_error(f"{what}: not ready after {timeout:.1f}s", log_path)
        time.sleep(POLL_INTERVAL)


def run_tool(
    argv: Sequence[str | Path], log_path: Path, timeout: float, cwd: Path | None = None
) -> None:
    """Run a command to completion with its output appended to `log_path`."""
    with log_path.open("ab") as out:
        out.write(f"$ {' '.join(map(str, argv))}\n".encode())
        out.flush()
        try:
            done = subprocess.run(
                [str(a) for a in argv],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise service_error(f"{argv[0]} did not finish in {timeout:.1f}s", log_path) from None
        except OSError as e:
            raise ServiceError(f"cannot run {argv[0]}: {e}") from e
    if done.returncode != 0:
        raise service_error(f"{argv[0]} exited with status {done.returncode}", log_path)


def pid_alive(pid: int) -> bool:
    """Whether `pid` names a live process (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # The state follows the parenthesised command name, which may itself contain ") ".
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] not in (b"Z", b"X")


class ServerProcess:
    """One long-running server as a direct child, its output going to a log file."""

    def __init__(self, name: str, argv: Sequence[str | Path], log_path: Path) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def __repr__(self) -> str:
        return f"ServerProcess({self.name!r}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, cwd: Path | None = None) -> None:
        if self.is_running():
            raise ServiceError(f"{self.name} is already running (pid {self.pid})")
        self._close_log()
        self._log_file = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,  # a Ctrl-C at the terminal is for pytest, not servers
            )
        except OSError as e:
            self._close_log()
            raise ServiceError(f"cannot start {self.name}: {e}") from e
        track(self)
        log.debug("%s started: pid %d, log %s", self.name, self._proc.pid, self.log_path)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def send(self, sig: signal.Signals) -> None:
        if not self.is_running() or self._proc is None:
            raise ServiceError(f"{self.name} is not running: cannot send {sig.name}")
        self._proc.send_signal(sig)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (after SIGCONT, in case it is paused), then SIGKILL past `timeout`."""
        if self.is_running() and self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s ignored SIGTERM for %.1fs: killing it", self.name, timeout)
        self.kill()

    def kill(self) -> None:
        """SIGKILL and reap; a no-op if it is not running."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(STOP_TIMEOUT)
        untrack(self)
        self._close_log()

    def kill_for_exit(self) -> None:
        self.kill()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
