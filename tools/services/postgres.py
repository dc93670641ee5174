"""A private PostgreSQL server on a loopback port, for tests and the local cluster.

Its data directory, socket directory and log live under `base_dir`; the first start runs
initdb (trust authentication for local and 127.0.0.1 connections, UTF8), later starts reuse the
data directory on the same port, as a restarted production server would. Durability settings
stay at their defaults (fsync and synchronous_commit on): fault tests rely on them.

Postgres refuses to run as root, so when this process is root every server command runs as the
`postgres` user (runuser), `base_dir` is handed to that user, and the directories above it are
given the traverse bit (o+x, not read) so that user can reach it.
"""

from __future__ import annotations

import logging
import math
import os
import pwd
import re
import signal
import stat
import time
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from .ports import HOST, free_port
from .process import (
    INSTALL_HINT,
    MissingBinaryError,
    ServiceError,
    find_binary,
    pid_alive,
    run_tool,
    service_error,
    track,
    untrack,
    wait_until,
)

log = logging.getLogger(__name__)

PG_USER = "postgres"
SUPERUSER = "postgres"
CONNECT_TIMEOUT = 10
INITDB_TIMEOUT = 60.0
SUN_PATH_MAX = 107  # bytes of a Unix socket's path (sun_path, less its NUL)
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "shared_buffers": "128MB",
    "max_connections": "100",
    "fsync": "on",
    "synchronous_commit": "on",
    "logging_collector": "off",
    # A fresh data directory has no old WAL segments to recycle, so every new 16 MB segment
    # was zero-filled and fsynced while the commits behind it waited: at ~11k orders/s that
    # was a 50-70 ms stall every ~2 s. Durability is unchanged: every WAL write is still
    # fsynced (decision 0013).
    "wal_init_zero": "off",
}


def pg_bin_dir() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian layout first, then PATH)."""
    installed = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")]
    if installed:
        return max(installed, key=lambda d: [int(n) for n in re.findall(r"\d+", d.parent.name)])
    try:
        return find_binary("pg_ctl").parent
    except MissingBinaryError:
        raise MissingBinaryError(
            f"PostgreSQL server binaries (pg_ctl, initdb) are not installed: {INSTALL_HINT}"
        ) from None


class PostgresServer:
    """One Postgres instance; `start()` it, connect with `dsn`, `stop()` it."""

    def __init__(self, base_dir: Path, port: int | None = None) -> None:
        self.base_dir = base_dir.absolute()
        self.port = port if port is not None else free_port()
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "sock"
        self.log_path = self.base_dir / "postgres.log"
        self.startup_seconds = 0.0  # of the last start(), initdb included
        self._as_root = os.geteuid() == 0
        self._bin_dir: Path | None = None

    def __repr__(self) -> str:
        return f"PostgresServer(port={self.port}, base_dir={str(self.base_dir)!r})"

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs (for fault tests: SIGSTOP, SIGKILL...)."""
        pid = self._postmaster_pid()
        return pid if pid is not None and _is_postgres(pid) else None

    def dsn_for(self, dbname: str) -> str:
        return f"host={HOST} port={self.port} user={SUPERUSER} dbname={dbname}"

    def start(self, timeout: float = 30.0) -> None:
        """Start (running initdb first if the data directory is new); no-op if running."""
        if self.is_running():
            return
        began = time.monotonic()
        self._binary("initdb")  # fail on a missing install before touching anything
        self._prepare_dirs()
        initdb_seconds = 0.0
        if not (self.data_dir / "PG_VERSION").exists():
            initdb_seconds = self._initdb()
        self._write_settings()
        self._remove_stale_lock_files()
        wait_seconds = str(max(1, math.ceil(timeout)))
        args: list[str | Path] = ["start", "-w", "-t", wait_seconds, "-D", self.data_dir]
        track(self)  # before the start: a timed-out start may leave a postmaster running
        self._pg_tool("pg_ctl", [*args, "-l", self.log_path], timeout + 5)
        self.startup_seconds = time.monotonic() - began
        log.info(
            "postgres on %s:%d ready in %.2fs (initdb %.2fs)",
            HOST,
            self.port,
            self.startup_seconds,
            initdb_seconds,
        )

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop: "fast" (clean shutdown) or "immediate" (no checkpoint: recovery on next start)."""
        if mode not in ("fast", "immediate"):
            raise ValueError(f"stop mode must be 'fast' or 'immediate', not {mode!r}")
        if self.is_running():
            wait_seconds = str(max(1, math.ceil(timeout)))
            args: list[str | Path] = ["stop", "-w", "-t", wait_seconds, "-m", mode]
            args += ["-D", self.data_dir]
            self._pg_tool("pg_ctl", args, timeout + 5)
        untrack(self)

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends (its process group), as a crash would."""
        pid = self._postmaster_pid()
        if pid is not None and _is_postgres(pid):
            try:
                if os.getpgid(pid) == pid:  # pg_ctl starts it as a session leader
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_until(lambda: not pid_alive(pid), 10.0, f"{self!r} kill", self.log_path)
        untrack(self)

    def kill_for_exit(self) -> None:
        self.kill()

    def is_running(self) -> bool:
        return self.pid is not None

    def create_database(self, name: str) -> str:
        """Create database `name`; return its DSN."""
        with self._admin_connection() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        """End every session on database `name`, then drop it (if it exists)."""
        with self._admin_connection() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))

    def _admin_connection(self) -> psycopg.Connection[TupleRow]:
        try:
            return psycopg.connect(self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        except psycopg.OperationalError as e:
            raise service_error(f"cannot connect to {self!r}: {e}", self.log_path) from e

    def _postmaster_pid(self) -> int | None:
        try:
            first_line = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first_line)
        except (OSError, ValueError):
            return None

    def _remove_stale_lock_files(self) -> None:
        # After a SIGKILL the dead postmaster lingers as a zombie until init reaps it (which can
        # take seconds here), and Postgres, probing with kill(pid, 0), would take it for a live
        # server. Its lock files name that pid: remove them if it is not a live Postgres.
        pid = self._postmaster_pid()
        if pid is None or _is_postgres(pid):
            return
        log.debug("%r: removing the lock files of dead postmaster %d", self, pid)
        socket_lock = self.socket_dir / f".s.PGSQL.{self.port}.lock"
        for lock in (self.data_dir / "postmaster.pid", socket_lock):
            lock.unlink(missing_ok=True)

    def _binary(self, name: str) -> Path:
        if self._bin_dir is None:
            self._bin_dir = pg_bin_dir()
        return self._bin_dir / name

    def _pg_tool(self, name: str, args: list[str | Path], timeout: float) -> None:
        argv: list[str | Path] = [self._binary(name), *args]
        if self._as_root:
            runuser = find_binary("runuser", [Path("/usr/sbin"), Path("/sbin")])
            argv = [runuser, "-u", PG_USER, "--", *argv]
        run_tool(argv, self.log_path, timeout, cwd=self.base_dir)

    def _initdb(self) -> float:
        began = time.monotonic()
        args: list[str | Path] = ["-D", self.data_dir, "-U", SUPERUSER, "-A", "trust"]
        args += ["-E", "UTF8", "--locale=C", "--no-instructions"]
        self._pg_tool("initdb", args, INITDB_TIMEOUT)
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# spotmatch: per-start settings\ninclude 'spotmatch.conf'\n")
        return time.monotonic() - began

    def _write_settings(self) -> None:
        sockets = str(self.socket_dir)
        if len(f"{sockets}/.s.PGSQL.{self.port}".encode()) > SUN_PATH_MAX:
            log.warning("%s: socket path too long for a Unix socket; TCP only", self)
            sockets = ""
        lines = [f"{key} = {value}" for key, value in SETTINGS.items()]
        lines += [f"port = {self.port}", f"unix_socket_directories = '{sockets}'"]
        path = self.data_dir / "spotmatch.conf"
        path.write_text("\n".join(lines) + "\n")
        self._give_to_pg_user(path)

    def _prepare_dirs(self) -> None:
        for directory in (self.base_dir, self.socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        if not self._as_root:
            return
        _grant_traverse(self.base_dir.parent)
        for path in (self.base_dir, self.socket_dir, self.log_path):
            self._give_to_pg_user(path)

    def _give_to_pg_user(self, path: Path) -> None:
        if self._as_root:
            try:
                user = pwd.getpwnam(PG_USER)
            except KeyError:
                raise MissingBinaryError(
                    f"no {PG_USER!r} user to run Postgres as: {INSTALL_HINT}"
                ) from None
            os.chown(path, user.pw_uid, user.pw_gid)


def _is_postgres(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) Postgres process, not a recycled pid."""
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    return name.startswith("postgres") and pid_alive(pid)


def _grant_traverse(directory: Path) -> None:
    """Let other users pass through `directory` and its ancestors (o+x; listing stays denied)."""
    for path in (directory, *directory.parents):
        mode = path.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.debug("adding o+x to %s so the %s user can reach its data", path, PG_USER)
            path.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


__all__ = ["PostgresServer", "ServiceError", "pg_bin_dir"]
