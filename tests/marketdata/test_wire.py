"""marketdata.wire writes the bytes the generated classes would: checked by parsing them
back and by comparing them with the classes' own serialization (fields in number order,
proto3 defaults omitted), for books, deltas and trades of every shape."""

from __future__ import annotations

import random

import pytest

from api.protowire import varint
from marketdata import wire
from marketdata.book import L2Book, snapshot_update
from matching.v1 import gateway_pb2, market_data_pb2

MD = market_data_pb2
Level = tuple[int, int, int]
EDGE_INTS = [0, 1, 127, 128, 0x3FFF, 0x4000, 0x1FFFFF, 0x200000, 0xFFFFFFF, 0x10000000,
             (1 << 62) + 5, (1 << 63) - 1, -1, -300, -(1 << 63)]  # fmt: skip


def _side(rng: random.Random, n: int) -> list[Level]:
    return [(rng.randint(1, 10**12), rng.randint(1, 10**9), rng.randint(1, 500)) for _ in range(n)]


def _levels(levels: list[Level]) -> list[market_data_pb2.PriceLevel]:
    return [MD.PriceLevel(price=p, quantity=q, order_count=n) for p, q, n in levels]


@pytest.mark.parametrize("n", EDGE_INTS)
def test_varint_is_protobufs_int64_encoding(n: int) -> None:
    expected = MD.OrderBookDelta(prev_seq=n).SerializeToString()
    assert b"\x08" + varint(n) == (expected or b"\x08\x00")


@pytest.mark.parametrize("seed", range(5))
def test_snapshot_bytes_are_the_generated_classes_bytes(seed: int) -> None:
    rng = random.Random(seed)
    bids, asks = _side(rng, rng.randint(0, 50)), _side(rng, rng.randint(0, 50))
    seq, as_of = rng.randint(0, 10**9), rng.randint(0, 2**62)
    got = wire.snapshot_update("BTC-USDT", seq, bids, asks, 2, as_of)
    assert got == snapshot_update("BTC-USDT", seq, bids, asks, 2, as_of).SerializeToString()
    parsed = MD.MarketDataUpdate.FromString(got)
    assert parsed.WhichOneof("update") == "snapshot"
    assert [(lv.price, lv.quantity, lv.order_count) for lv in parsed.snapshot.bids] == bids


def test_an_empty_book_at_seq_0_is_still_a_snapshot() -> None:
    parsed = MD.MarketDataUpdate.FromString(wire.snapshot_update("X", 0, [], [], 0, 0))
    assert parsed.WhichOneof("update") == "snapshot"
    assert parsed.seq == 0 and not parsed.snapshot.bids and not parsed.snapshot.asks


@pytest.mark.parametrize("seed", range(5))
def test_a_delta_turns_the_old_book_into_the_new(seed: int) -> None:
    rng = random.Random(seed)
    old = (_side(rng, 30), _side(rng, 30))
    keep = (rng.sample(old[0], 20), rng.sample(old[1], 10))
    new = (
        sorted({*keep[0], *_side(rng, 5)}, reverse=True),
        sorted({*keep[1], *((p, q + 1, n) for p, q, n in keep[1][:3])}),
    )
    book = L2Book(depth=1 << 30)
    book.apply_snapshot(7, MD.OrderBookSnapshot(bids=_levels(old[0]), asks=_levels(old[1])))
    got = wire.delta_update("BTC-USDT", 9, 7, old, new)
    update = MD.MarketDataUpdate.FromString(got)
    book.apply_delta(update.seq, update.delta)
    assert book.seq == 9
    assert book.bids == {p: (q, n) for p, q, n in new[0]}
    assert book.asks == {p: (q, n) for p, q, n in new[1]}
    expected = MD.MarketDataUpdate(symbol="BTC-USDT", seq=9)
    expected.delta.prev_seq = 7
    expected.delta.bids.extend(_levels(wire.diff_side(old[0], new[0])))
    expected.delta.asks.extend(_levels(wire.diff_side(old[1], new[1])))
    assert got == expected.SerializeToString()


def test_a_delta_that_changes_nothing_still_chains() -> None:
    side = [(10, 1, 1)]
    update = MD.MarketDataUpdate.FromString(wire.delta_update("X", 4, 3, (side, []), (side, [])))
    assert update.WhichOneof("update") == "delta"
    assert update.delta.prev_seq == 3 and not update.delta.bids


def test_removed_levels_go_out_with_quantity_0() -> None:
    assert wire.diff_side([(10, 1, 1), (9, 2, 1)], [(10, 1, 1)]) == [(9, 0, 0)]
    assert wire.diff_side([(10, 1, 1)], [(10, 3, 2), (8, 1, 1)]) == [(10, 3, 2), (8, 1, 1)]


def test_trades_bytes_are_the_generated_classes_bytes() -> None:
    fills = [(100_010, 3), (100_011, 0), (1 << 40, 7)]
    got = wire.trades_update("ETH-USDT", 42, 2, fills, 1_700_000_000_123_456_789)
    trades = [
        MD.PublicTrade(price=p, quantity=q, taker_side=2, match_index=i,  # type: ignore[arg-type]
                       time_unix_nanos=1_700_000_000_123_456_789)
        for i, (p, q) in enumerate(fills)
    ]  # fmt: skip
    expected = MD.MarketDataUpdate(symbol="ETH-USDT", seq=42, trades=MD.PublicTrades(trades=trades))
    assert got == expected.SerializeToString()


def test_a_response_carries_the_updates_in_order() -> None:
    updates = [wire.trades_update("X", s, 1, [(5, 1)], 9) for s in (1, 2, 3)]
    response = gateway_pb2.StreamMarketDataResponse.FromString(wire.response(updates))
    assert [u.seq for u in response.updates] == [1, 2, 3]
    assert wire.response([]) == b""


def test_symbols_are_utf8() -> None:
    update = MD.MarketDataUpdate.FromString(wire.snapshot_update("ÉTH-€", 1, [], [], 1, 1))
    assert update.symbol == "ÉTH-€"
