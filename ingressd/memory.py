"""Memory: keeping the cyclic garbage collector out of the way of big, cycle-free computations.

    gc_paused()   around a build (``ingressd.build.building``) or a render
                  (``ingressd.nginx.rendering``)
    SyncWorker    ``gc.freeze()`` once the first sync is applied (``freeze_after_first_sync``):
                  the Store's objects loaded at start-up leave the collector's generations

A build or a render allocates hundreds of thousands of small objects and keeps many of them;
each allocation burst can set off a full collection, which walks every object the process holds
(the Store's raw objects, millions at scale).  Neither makes reference cycles, so pausing the
collector costs nothing and makes a cold build markedly faster (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["gc_paused"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection for the duration (reference counting goes on); nested
    and already-disabled cases leave the collector as they found it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
