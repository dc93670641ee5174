"""Free-port allocation and the shared process helpers (no servers)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tools.services import MissingBinaryError, ServiceError, free_port, free_ports
from tools.services.process import find_binary, log_tail, wait_until


def test_free_ports_are_never_handed_out_twice() -> None:
    ports = [free_port() for _ in range(300)] + free_ports(50)
    assert len(set(ports)) == len(ports)


def test_a_free_port_can_be_bound_on_loopback() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))
        assert s.getsockname() == ("127.0.0.1", port)


def test_missing_binary_says_how_to_install() -> None:
    with pytest.raises(MissingBinaryError, match="make install"):
        find_binary("spotmatch-no-such-server")


def test_wait_until_times_out_with_the_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    began = time.monotonic()
    with pytest.raises(ServiceError, match=r"not ready after 0\.2s") as raised:
        wait_until(lambda: False, 0.2, "demo", log)
    assert time.monotonic() - began < 2
    assert "line 99" in str(raised.value)
    assert "line 10\n" not in str(raised.value)


def test_wait_until_fails_at_once_when_the_server_exits(tmp_path: Path) -> None:
    began = time.monotonic()
    with pytest.raises(ServiceError, match="exited while starting"):
        wait_until(lambda: False, 30.0, "demo", tmp_path / "none.log", alive=lambda: False)
    assert time.monotonic() - began < 2


def test_wait_until_treats_exceptions_as_not_ready(tmp_path: Path) -> None:
    calls: list[int] = []

    def ready() -> bool:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError
        return True

    wait_until(ready, 5.0, "demo", tmp_path / "none.log")
    assert len(calls) == 3


def test_log_tail_of_a_missing_log_says_so(tmp_path: Path) -> None:
    assert "no log at" in log_tail(tmp_path / "absent.log")
