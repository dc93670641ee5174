"""Free loopback TCP ports for local servers.

The kernel picks a free port (bind to port 0 on 127.0.0.1); a process-local set makes sure the
same port is never handed out twice by this process, even after the probe socket is closed.
Another process can still take a port before the server binds it: launchers report that as a
clear start failure with the server's log.
"""

from __future__ import annotations

import socket
import threading

from .process import ServiceError

HOST = "127.0.0.1"
MAX_TRIES = 200

_handed_out: set[int] = set()
_lock = threading.Lock()


def _probe() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def free_port() -> int:
    """A loopback port that is free now and that this process has not handed out before."""
    with _lock:
        for _ in range(MAX_TRIES):
            port = _probe()
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise ServiceError(f"no new free port on {HOST} after {MAX_TRIES} tries")


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports."""
    return [free_port() for _ in range(count)]
