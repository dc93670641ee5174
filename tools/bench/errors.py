"""The benchmarks' one root exception."""

from __future__ import annotations


class BenchError(Exception):
    """A benchmark could not be set up or run (not a measured failure: those are counted)."""

    retriable = False
