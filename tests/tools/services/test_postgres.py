"""The Postgres launcher against a real server: connections, crashes, restarts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tools.services import PostgresServer, ServiceError
from tools.services.ports import free_port

pytestmark = pytest.mark.integration


def _connect(dsn: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(dsn, connect_timeout=5, autocommit=True)


def _scalar(dsn: str, query: str) -> object:
    with _connect(dsn) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture
def own_pg(tmp_path: Path) -> Iterator[PostgresServer]:
    """A private server for tests that crash or stop it."""
    server = PostgresServer(tmp_path / "pg")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_pg_dsn_is_a_fresh_writable_database(pg_dsn: str) -> None:
    assert str(_scalar(pg_dsn, "SELECT current_database()")).startswith("t_")
    assert _scalar(pg_dsn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
    with _connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO t VALUES (1, 'ünïcode')")
        assert conn.execute("SELECT note FROM t").fetchall() == [("ünïcode",)]
    assert _scalar(pg_dsn, "SHOW server_encoding") == "UTF8"
    assert _scalar(pg_dsn, "SHOW fsync") == "on"
    assert _scalar(pg_dsn, "SHOW synchronous_commit") == "on"


@pytest.mark.parametrize("crash", ["stop_immediate", "kill"])
def test_committed_rows_survive_a_crash(own_pg: PostgresServer, crash: str) -> None:
    with _connect(own_pg.dsn) as conn:
        conn.execute("CREATE TABLE fills (id int PRIMARY KEY)")
        conn.execute("INSERT INTO fills SELECT generate_series(1, 1000)")
    port = own_pg.port
    if crash == "kill":
        own_pg.kill()
    else:
        own_pg.stop("immediate")
    assert not own_pg.is_running()
    with pytest.raises(psycopg.OperationalError):
        _connect(own_pg.dsn).close()

    own_pg.start()
    assert own_pg.is_running()
    assert own_pg.port == port
    assert _scalar(own_pg.dsn, "SELECT count(*) FROM fills") == 1000
    assert "automatic recovery in progress" in own_pg.log_path.read_text()


def test_clean_stop_and_restart_keeps_data_and_port(own_pg: PostgresServer) -> None:
    own_pg.create_database("kept")
    own_pg.stop()
    assert not own_pg.is_running()
    own_pg.stop()  # stopping a stopped server is a no-op
    own_pg.start()
    own_pg.start()  # starting a running server is a no-op
    assert _scalar(own_pg.dsn_for("kept"), "SELECT current_database()") == "kept"


@pytest.mark.parametrize("over", [0, 1])
def test_a_socket_path_at_or_over_the_limit_starts(tmp_path: Path, over: int) -> None:
    """Postgres's socket is <socket dir>/.s.PGSQL.<port>, at most 107 bytes: at the limit it
    listens there, one byte over on TCP only; both start."""
    port = free_port()
    fixed = len(f"{tmp_path}/") + len(f"/pg/sock/.s.PGSQL.{port}")
    server = PostgresServer(tmp_path / ("d" * (107 + over - fixed)) / "pg", port=port)
    assert len(str(server.socket_dir / f".s.PGSQL.{port}")) == 107 + over
    try:
        server.start()
        assert _scalar(server.dsn, "SELECT 1") == 1
        assert (server.socket_dir / f".s.PGSQL.{port}").exists() is (over == 0)
    finally:
        server.stop()


def test_two_servers_run_side_by_side(pg_server: PostgresServer, own_pg: PostgresServer) -> None:
    assert own_pg.port != pg_server.port
    name = f"only_{uuid.uuid4().hex}"
    dsn = own_pg.create_database(name)
    assert _scalar(dsn, "SELECT current_database()") == name
    count = f"SELECT count(*) FROM pg_database WHERE datname = '{name}'"
    assert _scalar(own_pg.dsn, count) == 1
    assert _scalar(pg_server.dsn, count) == 0


def test_drop_database_ends_its_sessions(pg_server: PostgresServer) -> None:
    name = f"t_{uuid.uuid4().hex}"
    with _connect(pg_server.create_database(name)) as conn:
        conn.execute("SELECT 1")
        pg_server.drop_database(name)
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    count = f"SELECT count(*) FROM pg_database WHERE datname = '{name}'"
    assert _scalar(pg_server.dsn, count) == 0


def test_a_taken_port_fails_with_the_server_log(pg_server: PostgresServer, tmp_path: Path) -> None:
    clash = PostgresServer(tmp_path / "clash", port=pg_server.port)
    try:
        with pytest.raises(ServiceError, match=r"could not (create|bind)") as raised:
            clash.start(timeout=15)
        assert "last lines of" in str(raised.value)
        assert not clash.is_running()
    finally:
        clash.stop()
    assert pg_server.is_running()
