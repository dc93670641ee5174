"""A router's Prometheus metrics (DESIGN section 9; served by telemetry.metrics).

Counted once per call (a stream: per message): its end-to-end latency, from its commands
handed to the shard links to the last one answered, and its commands by result (``ok`` or
the CommandError reason). Gauges (buffered commands, links up) are read when scraped.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram

from matching.v1 import orders_pb2
from router.links import LinkSet
from router.routing import Dispatcher
from telemetry.metrics import CALL_BUCKETS, reject_label

REQUEST_SECONDS = Histogram(
    "spotmatch_router_request_seconds",
    "From a call's (or stream message's) commands dispatched to all of them answered",
    ["router", "kind"],
    buckets=CALL_BUCKETS,
)
COMMANDS = Counter(
    "spotmatch_router_commands_total",
    "Commands answered, by result: ok, or the CommandError reason",
    ["router", "result"],
)
BUFFERED = Gauge(
    "spotmatch_router_buffered_commands",
    "Commands waiting for a symbol without a reachable owner (moving, failing over)",
    ["router"],
)
HANDOVER_WAITS = Counter(
    "spotmatch_router_handover_waits_total",
    "Symbols that changed owner and waited for the old owner's release marker, by how the"
    " wait ended: marker, stream (the old owner's stream ended first) or timeout",
    ["router", "ended"],
)
LINKS_READY = Gauge("spotmatch_router_links_ready", "Shard links with a stream open", ["router"])
KINDS = ("unary", "batch", "trade")
HANDOVER_ENDINGS = ("marker", "stream", "timeout")


class RouterMetrics:
    def __init__(self, router_id: str, dispatcher: Dispatcher, links: LinkSet) -> None:
        self._router = router_id
        self._latency = {kind: REQUEST_SECONDS.labels(router_id, kind) for kind in KINDS}
        BUFFERED.labels(router_id).set_function(dispatcher.buffers.total)
        LINKS_READY.labels(router_id).set_function(lambda: sum(link.ready for link in links.all()))
        waits = {ended: HANDOVER_WAITS.labels(router_id, ended) for ended in HANDOVER_ENDINGS}
        dispatcher.handovers.on_end = lambda ended: waits[ended].inc()

    def observe(
        self, kind: str, results: Sequence[orders_pb2.CommandResult], seconds: float
    ) -> None:
        self._latency[kind].observe(seconds)
        tally: Tally[str] = Tally()
        for result in results:
            if result.WhichOneof("result") == "error":
                tally[reject_label(result.error.reason)] += 1
            else:
                tally["ok"] += 1
        for name, count in tally.items():
            COMMANDS.labels(self._router, name).inc(count)

    def close(self) -> None:
        for metric in (BUFFERED, LINKS_READY):
            metric.remove(self._router)
        for kind in KINDS:
            REQUEST_SECONDS.remove(self._router, kind)
        for ended in HANDOVER_ENDINGS:
            HANDOVER_WAITS.remove(self._router, ended)
