"""The api package's exceptions: one root."""

from __future__ import annotations


class ApiError(Exception):
    """Root of the api package's errors: a request that breaks the wire contract."""

    retriable = False
