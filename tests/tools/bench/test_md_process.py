"""The market data subscriber process of `spotmatch bench cluster`: a child that cannot run
is reported with what it wrote to stderr, not waited on (the working path is covered by the
tiny end-to-end run in test_cluster_bench.py)."""

from __future__ import annotations

import pytest

from tools.bench.errors import BenchError
from tools.bench.md_process import subscriber_process


async def test_a_child_that_exits_at_once_is_reported_with_its_stderr() -> None:
    with pytest.raises(
        BenchError, match=r"no answer; its stderr ends: usage: python -m tools\.bench\.md_process"
    ):
        async with subscriber_process("127.0.0.1:1", [], 1):  # no symbols: a usage error
            pytest.fail("the block ran without a ready child")
