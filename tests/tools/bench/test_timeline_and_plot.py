"""Throughput-and-latency-over-time buckets, and the PNG written from them (no sockets)."""

from __future__ import annotations

from pathlib import Path

from tools.bench.load import LoadResult
from tools.bench.plot import write_plot
from tools.bench.timeline import timeline

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _result(answers: list[tuple[float, int, float]]) -> LoadResult:
    result = LoadResult()
    for at, count, latency in answers:
        result.acks.append((at, count))
        result.latencies_ms.append(latency)
    return result


def test_answers_land_in_their_half_second_bucket() -> None:
    start = 1_000.0
    result = _result(
        [(start + 0.1, 100, 5.0), (start + 0.4, 100, 7.0), (start + 1.2, 50, 40.0)]
        + [(start + 0.6 + i / 1_000, 10, float(i)) for i in range(100)]
    )
    buckets = timeline(result, start, duration_s=1.5)
    assert [b["t"] for b in buckets] == [0.0, 0.5, 1.0]
    assert [b["orders"] for b in buckets] == [200, 1_000, 50]
    assert [b["orders_per_sec"] for b in buckets] == [400, 2_000, 100]
    assert (buckets[0]["p50_ms"], buckets[0]["p99_ms"]) == (7.0, 7.0)
    assert (buckets[1]["p50_ms"], buckets[1]["p99_ms"]) == (50.0, 99.0)


def test_a_stall_is_a_gap_and_the_drain_after_the_duration_is_left_out() -> None:
    start = 5.0
    result = _result([(start + 0.2, 10, 3.0), (start + 1.7, 10, 900.0), (start + 2.3, 99, 1.0)])
    buckets = timeline(result, start, duration_s=2.0)
    assert [b["orders"] for b in buckets] == [10, 0, 0, 10]
    assert buckets[1]["p50_ms"] is None and buckets[2]["p99_ms"] is None
    assert buckets[3]["p99_ms"] == 900.0


def test_a_short_last_bucket_reports_its_rate_over_the_time_it_covers() -> None:
    result = _result([(0.1, 10, 1.0), (0.55, 20, 1.0)])
    buckets = timeline(result, 0.0, duration_s=0.6)
    assert [b["orders_per_sec"] for b in buckets] == [20, 200]


def test_no_answers_gives_empty_buckets() -> None:
    buckets = timeline(LoadResult(), 0.0, duration_s=1.0)
    assert [(b["orders"], b["p50_ms"]) for b in buckets] == [(0, None), (0, None)]


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    steady: list[dict[str, float | None]] = [
        {"t": i / 2, "orders_per_sec": 5_000 + 100 * i, "p50_ms": 20.0 + i, "p99_ms": 60.0 + i}
        for i in range(20)
    ]
    stalled = [dict(b) for b in steady]
    stalled[5].update(orders_per_sec=0, p50_ms=None, p99_ms=None)
    stalled[6].update(p99_ms=4_000.0)  # a wide spread: log axis
    path = write_plot(
        tmp_path / "out" / "cluster.png", {"max": steady, "open loop": stalled}, "test"
    )
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 20_000  # two columns of axes, lines and labels, not an empty canvas


def test_a_phase_without_answers_still_plots(tmp_path: Path) -> None:
    data = write_plot(tmp_path / "empty.png", {"max": []}, "nothing").read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 5_000
