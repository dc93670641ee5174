"""Keep Python's full garbage-collection passes short on a shard whose books keep growing.

Measured (a GC callback in the shard processes under `spotmatch bench cluster`-style load):
full (generation 2) passes took up to 140 ms each, several per 15 s, and found 0-20
collectable objects: they walk the resting orders, which live long and die by reference
counting, not by the cycle collector. Each pass stalls the event loop: matching, commits and
answers. So every ``interval`` seconds the shard collects the young generations (cheap) and
freezes what survived: frozen objects are skipped by later passes, which then only walk what
is younger than the last freeze. What freezing costs: a reference cycle that was already
garbage in the old generation when it was frozen is never reclaimed (the measurement says:
a handful of objects per pass); objects freed by reference counting are freed as before.
So nothing long-lived may rely on the collector to be freed: a resting order and its price
level refer to each other, and a book the shard drops (a reload, a move, a fence) unlinks
them first (``BookSide.clear``), or every dropped book would stay in memory for good.
With a 1 s interval the worst full pass under the same load fell from 90-127 ms to 16-27 ms
(worst three per run; 5 s: 26-45 ms).

Young passes are made rarer too (``tune``): Python starts one every 700 net allocations, and
each walks every young object still alive, i.e. the rows, reports and messages of the
batches in flight, again and again. A shard allocates a dozen short-lived objects per order
and almost never a reference cycle, so at 50,000 allocations per pass the collector costs
far less (recording a batch's rows: 8.0 -> 3.3 us per command with the collector on, 2.7
with it off; the shard under `spotmatch bench shard` load: 15.1k -> 16.5k orders/s, medians
of three interleaved runs, docs/benchmarks.md). The price is a pass every few milliseconds
of full load that walks up to that many objects (~1-2 ms).
"""

from __future__ import annotations

import asyncio
import gc

YOUNG_THRESHOLD = 50_000


def tune(young_threshold: int) -> None:
    """Start a young-generation pass every ``young_threshold`` net allocations (0: keep
    Python's default)."""
    if young_threshold > 0:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)


async def freeze_survivors(interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        gc.collect(1)
        gc.freeze()
