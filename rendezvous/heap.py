"""Keeping the garbage collector's pauses out of the deadline.

CPython's full (generation 2) collection walks every object it tracks. A service that has loaded
Arrow, DuckDB, its schemas and its topics holds about 90,000 of them once started, and one full
collection then stops the event loop for 30-50 ms (measured by `benchmarks.rendezvous` on its
2-core machine): most of a 50 ms SLA, for every request in flight. `settle()` collects once and
freezes what survives (`gc.freeze`): those objects live as long as the process anyway, and later
collections walk only what serving made since (a full one then takes about 0.5 ms). Called by
`rendezvous serve` once it listens and by `rendezvous model` once its consumer and writer are
open; a process embedding the service calls it itself when it wants the same.
"""

from __future__ import annotations

import gc

__all__ = ["settle"]


def settle() -> int:
    """Collect, then freeze every surviving object out of later collections; how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
