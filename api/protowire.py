"""Protobuf wire-format pieces for messages we encode as bytes ourselves (compiled:
tools/hot_path.py). Routers frame Execute batches with them (router/wire.py); shards encode
market data with them (marketdata/wire.py). Each encoder's tests parse its bytes back with
the generated classes."""

from __future__ import annotations

_SMALL = [bytes((n,)) for n in range(0x80)]
_UINT64 = (1 << 64) - 1


def varint(n: int) -> bytes:
    """Base-128 varint of ``n``; a negative int64 is its 64-bit two's complement (ten
    bytes), as protobuf encodes int32/int64. Small values take the short paths."""
    if 0 <= n < 0x80:
        return _SMALL[n]
    if 0 < n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    if 0 < n < 0x200000:
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
    if 0 < n < 0x10000000:
        return bytes(
            ((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, ((n >> 14) & 0x7F) | 0x80, n >> 21)
        )
    n &= _UINT64
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def int_field(tag: bytes, n: int) -> bytes:
    """A varint field (``tag`` is its key byte); nothing for 0, as proto3 omits defaults."""
    return tag + varint(n) if n else b""


def bytes_field(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field (sub-message, string, bytes), even when ``body`` is empty:
    an empty sub-message still marks which ``oneof`` member is set."""
    return tag + varint(len(body)) + body
