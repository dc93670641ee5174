"""`--plot PATH`: throughput and latency over time as a PNG (matplotlib, Agg backend).

One column per phase (e.g. the max-throughput run and the open-loop run), two rows: orders
acknowledged per second, and p50/p99 latency per bucket (on a log axis when they spread
widely, so a stall and the steady state stay readable side by side). matplotlib is imported
here only, and only when a plot is asked for: it is a dev dependency, and slow to import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

Bucket = Mapping[str, Any]  # tools.bench.timeline: t, orders_per_sec, p50_ms, p99_ms
LOG_SCALE_SPREAD = 20  # latencies spread wider than this factor get a log axis


def write_plot(path: Path, phases: Mapping[str, Sequence[Bucket]], title: str) -> Path:
    """Write the PNG; phases without buckets get an empty panel saying so."""
    import matplotlib  # noqa: PLC0415 - lazy, see the module doc

    matplotlib.use("Agg")  # no display here, and no GUI toolkit wanted
    from matplotlib.figure import Figure  # noqa: PLC0415

    names = list(phases) or ["(no data)"]
    fig = Figure(figsize=(5.5 * len(names), 6.5), layout="constrained")
    axes = fig.subplots(2, len(names), sharex="col", squeeze=False)
    for col, name in enumerate(names):
        _panel(axes[0][col], axes[1][col], name, phases.get(name, ()))
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def _panel(top: Any, bottom: Any, name: str, buckets: Sequence[Bucket]) -> None:
    t = [b["t"] for b in buckets]
    top.set_title(name)
    top.set_ylabel("orders acked / s")
    top.grid(True, alpha=0.3)
    bottom.set_xlabel("seconds")
    bottom.set_ylabel("latency per answer, ms")
    bottom.grid(True, which="both", alpha=0.3)
    if not buckets:
        top.text(0.5, 0.5, "no answers", ha="center", va="center", transform=top.transAxes)
        return
    # A step per bucket, drawn over the bucket's whole width (so the last one shows too).
    width = t[1] - t[0] if len(t) > 1 else 0.5
    rates = [b["orders_per_sec"] for b in buckets]
    top.step([*t, t[-1] + width], [*rates, rates[-1]], where="post", color="tab:blue")
    top.set_ylim(bottom=0)
    middles = [x + width / 2 for x in t]  # a bucket's latencies belong to its whole width
    for key, color in (("p50_ms", "tab:green"), ("p99_ms", "tab:red")):
        # None (an empty bucket) becomes NaN: a gap in the line rather than a fake value.
        values = [math.nan if b[key] is None else b[key] for b in buckets]
        bottom.plot(middles, values, marker=".", color=color, label=key.removesuffix("_ms"))
    seen = [b[k] for b in buckets for k in ("p50_ms", "p99_ms") if b[k]]
    if seen and max(seen) > LOG_SCALE_SPREAD * min(seen):
        # A stall next to a steady state: log scale keeps both readable, in plain numbers.
        from matplotlib.ticker import ScalarFormatter  # noqa: PLC0415

        bottom.set_yscale("log")
        bottom.yaxis.set_major_formatter(ScalarFormatter())
    else:
        bottom.set_ylim(bottom=0)
    bottom.legend(loc="best")
