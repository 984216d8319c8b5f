"""Python's garbage collector as the worker's latency sees it: each collection's pause, measured.

A collection stops the whole worker (one event loop: every stage, the watermark timer, the
consumer). The cyclic collector's full (generation 2) pass walks every object the process holds;
a worker holding tables, caches and Faust's machinery holds millions, so one pass is a pause an
action waits through. `GcPauses` times every collection through `gc.callbacks` (the standard hook:
called at each collection's start and stop) into `stream_app_gc_pause_seconds{generation}` and logs
each one longer than `LOG_OVER_S`, so a slow action can be matched to a pause in the worker's log.

The timing itself is two `perf_counter` calls per collection (tens of thousands a minute at most).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

log = logging.getLogger(__name__)

LOG_OVER_S = 0.05
"""A collection that stopped the worker longer than this is logged (generation, seconds, objects freed)."""
PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class GcPauses:
    """Times each collection (`gc.callbacks`); `install()` once per process, `uninstall()` in tests.

    >>> from prometheus_client import CollectorRegistry
    >>> clock = iter([1.0, 1.2]).__next__
    >>> pauses = GcPauses(CollectorRegistry(), clock=clock)
    >>> pauses.on_gc("start", {"generation": 2})
    >>> pauses.on_gc("stop", {"generation": 2, "collected": 5, "uncollectable": 0})
    >>> round(pauses.longest[2], 3), pauses.count[2]
    (0.2, 1)
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.perf_counter,
        log_over_s: float = LOG_OVER_S,
    ):
        self.clock = clock
        self.log_over_s = log_over_s
        self.seconds = Histogram(
            "stream_app_gc_pause_seconds",
            "Python garbage collections: how long each stopped the worker, by generation",
            ["generation"],
            buckets=PAUSE_BUCKETS,
            registry=registry,
        )
        self._started: float | None = None
        self.longest: dict[int, float] = {}
        self.count: dict[int, int] = {}

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        """The `gc.callbacks` hook (must not raise, nor allocate much: it runs inside collections)."""
        if phase == "start":
            self._started = self.clock()
            return
        if self._started is None:  # installed in the middle of a collection
            return
        pause = self.clock() - self._started
        self._started = None
        generation = int(info.get("generation", -1))
        self.seconds.labels(str(generation)).observe(pause)
        self.count[generation] = self.count.get(generation, 0) + 1
        self.longest[generation] = max(pause, self.longest.get(generation, 0.0))
        if pause > self.log_over_s:
            log.info(
                "gc pause: generation %d, %.3f s, %d collected", generation, pause, info.get("collected", 0)
            )

    def install(self) -> None:
        if self.on_gc not in gc.callbacks:
            gc.callbacks.append(self.on_gc)

    def uninstall(self) -> None:
        if self.on_gc in gc.callbacks:
            gc.callbacks.remove(self.on_gc)


def freeze(reason: str, clock: Callable[[], float] = time.perf_counter) -> float:
    """Collect once, then leave every object alive now out of later collections (`gc.freeze`).

    A full collection walks every tracked object; after start-up (imports, the app, the topology's
    engines) and after a rebalance (tables opened, caches refilled) nearly all of them live as long
    as the process, and walking them is the whole of the pause (~0.1-0.2 s a pass here, nine passes
    back to back in each rebalance: Faust's RocksDB store calls `gc.collect()` per table). Frozen
    objects are still freed by reference counting; only a cycle among them is never reclaimed, so
    this runs at those two moments, not on a timer. Returns the seconds the collection took.
    """
    started = clock()
    gc.collect()
    took = clock() - started
    gc.freeze()
    log.info("gc: %d objects frozen (%s), collection before it %.3f s", gc.get_freeze_count(), reason, took)
    return took
