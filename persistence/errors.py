"""The persistence package's exceptions: one root, each saying whether a retry can help."""

from __future__ import annotations


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


class UnknownSymbolError(PersistenceError):
    retriable = False


class MigrationError(PersistenceError):
    retriable = False
