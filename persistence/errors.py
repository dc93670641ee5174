"""The persistence package's exceptions: one root, each saying whether a retry can help."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


class PersistenceError(Exception):
    """Root of persistence errors."""

    retriable = True


class FencedError(PersistenceError):
    """This writer's epoch for a symbol is stale: another owner has claimed it."""

    retriable = False

    def __init__(self, symbols: dict[str, tuple[int, int]]) -> None:
        self.symbols = symbols  # symbol -> (our epoch, epoch in Postgres)
        detail = ", ".join(f"{s} (ours {o}, current {c})" for s, (o, c) in sorted(symbols.items()))
        super().__init__(f"fenced: stale epoch for {detail}")


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn driver and network errors (psycopg, pool timeouts, sockets) into PersistenceError,
    so callers above persistence handle one exception type."""
    try:
        yield
    except PersistenceError:
        raise
    except (psycopg.Error, OSError, TimeoutError) as exc:
        raise PersistenceError(f"{what}: {exc}") from exc


class UnknownSymbolError(PersistenceError):
    retriable = False


class MigrationError(PersistenceError):
    retriable = False
