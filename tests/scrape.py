"""Reading a process's Prometheus endpoint in tests: over HTTP, as Prometheus would."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, tuple[tuple[str, str], ...]]  # name, sorted labels


def scrape(port: int) -> dict[Sample, float]:
    """Every sample of ``http://127.0.0.1:PORT/metrics`` (blocking: run it in a thread)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def symbol_changes(port: int, shard_id: str) -> dict[str, float]:
    """A shard's spotmatch_shard_symbol_changes_total by change (blocking, as ``scrape``)."""
    return {
        dict(labels)["change"]: value
        for (name, labels), value in scrape(port).items()
        if name == "spotmatch_shard_symbol_changes_total" and ("shard", shard_id) in labels
    }
