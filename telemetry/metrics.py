"""Prometheus metrics (DESIGN section 9): the scrape endpoint every process can serve.

Each part defines the metrics it owns (shard/metrics.py, router/metrics.py, the controller's
decisions); they all live in prometheus_client's process-wide registry, labelled with the
node's id, so several nodes in one process (tests) keep apart. Counting happens per batch
or per call, never per order on its own.
"""

from __future__ import annotations

import logging
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from matching.v1 import types_pb2

log = logging.getLogger(__name__)

# Seconds from a call's (or stream message's) commands taken in to answered: routers' and
# shards' request histograms share them, so their latencies compare bucket for bucket.
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class MetricsEndpoint:
    """``/metrics`` over HTTP on ``listen`` (host:port; port 0 picks a free one), served
    by a daemon thread until ``close``."""

    def __init__(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        server, _thread = start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1")
        self._server: WSGIServer = server
        self.port: int = server.server_port
        log.info("metrics on http://%s:%d/metrics", host or "127.0.0.1", self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


_REJECT_LABELS: dict[int, str] = {
    int(code): name.removeprefix("REJECT_CODE_").lower()
    for name, code in types_pb2.RejectCode.items()
}


def reject_label(reason: int) -> str:
    """The commands_total label of a reject code. One this process's protos do not name (a
    newer peer's) is "unrecognised": raising here turned an executed command's answer into
    an error, and a label per raw value would let a peer grow the series without bound."""
    return _REJECT_LABELS.get(reason, "unrecognised")
