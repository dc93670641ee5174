"""The synchronous in-process matching API: commands in, reports out, many symbols."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .book import OrderBook
from .types import (
    AmendOrder,
    CancelOrder,
    Command,
    MassCancel,
    OpenOrder,
    OrderStatus,
    PlaceOrder,
    RejectCode,
    Report,
    SetSymbolStatus,
    SymbolSpec,
)

_Handler = Callable[[OrderBook, Command], Report]
_HANDLERS: dict[type, _Handler] = {
    PlaceOrder: OrderBook.place,  # type: ignore[dict-item]
    CancelOrder: OrderBook.cancel,  # type: ignore[dict-item]
    AmendOrder: OrderBook.amend,  # type: ignore[dict-item]
    MassCancel: OrderBook.mass_cancel,  # type: ignore[dict-item]
    SetSymbolStatus: OrderBook.set_status,  # type: ignore[dict-item]
}


class EngineError(Exception):
    """Root of the matching core's errors: misuse by the caller, never bad client input."""

    retriable = False


class MatchingEngine:
    """Books of many symbols; deterministic: the same commands give the same reports."""

    def __init__(self) -> None:
        self._books: dict[str, OrderBook] = {}

    def add_symbol(
        self, spec: SymbolSpec, last_seq: int = 0, open_orders: Iterable[OpenOrder] = ()
    ) -> OrderBook:
        """Start serving a symbol, optionally from recovered state."""
        if spec.symbol in self._books:
            raise EngineError(f"symbol {spec.symbol!r} is already loaded")
        book = OrderBook(spec, last_seq)
        book.restore(open_orders)
        self._books[spec.symbol] = book
        return book

    def remove_symbol(self, symbol: str) -> None:
        book = self._books.pop(symbol, None)
        if book is not None:
            book.clear()  # freed by reference counting, frozen or not (BookSide.clear)

    def symbols(self) -> list[str]:
        return list(self._books)

    def book(self, symbol: str) -> OrderBook:
        return self._books[symbol]

    def execute(self, cmd: Command) -> Report:
        book = self._books.get(cmd.symbol)
        if book is None:
            return unknown_symbol(cmd)
        return _HANDLERS[type(cmd)](book, cmd)

    def execute_batch(self, cmds: Iterable[Command]) -> list[Report]:
        books = self._books
        handlers = _HANDLERS
        reports = []
        for cmd in cmds:
            book = books.get(cmd.symbol)
            if book is None:
                reports.append(unknown_symbol(cmd))
            else:
                reports.append(handlers[type(cmd)](book, cmd))
        return reports


def unknown_symbol(cmd: Command) -> Report:
    return Report(
        cmd.symbol,
        0,
        getattr(cmd, "order_id", 0),
        getattr(cmd, "client_order_id", ""),
        getattr(cmd, "account", ""),
        OrderStatus.REJECTED,
        RejectCode.UNKNOWN_SYMBOL,
        getattr(cmd, "price", 0),
        0,
        0,
        0,
        (),
        (),
        cmd.side if type(cmd) is PlaceOrder else 0,
    )
