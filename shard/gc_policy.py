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
With a 1 s interval the worst full pass under the same load fell from 90-127 ms to 16-27 ms
(worst three per run; 5 s: 26-45 ms).
"""

from __future__ import annotations

import asyncio
import gc


async def freeze_survivors(interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        gc.collect(1)
        gc.freeze()
