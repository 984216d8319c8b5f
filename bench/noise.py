"""Is the machine quiet enough to trust the figures? The spread of repeated ceilings, the CPU that
other processes took during the run, and the load average."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bench.procstat import busy_ticks, live_children_cpu_seconds, own_cpu_seconds

MAX_SPREAD = 0.25
"""(max - min) / median of a ceiling's runs above which its median is not to be trusted."""
MAX_OTHERS_SHARE = 0.25
"""Share of the machine's CPU other processes may take during the run."""


def spread(values: Sequence[float]) -> float:
    """(max - min) / median; 0 for fewer than two values.

    >>> spread([90, 100, 110])
    0.2
    """
    if len(values) < 2:
        return 0.0
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle else float("inf")


@dataclass
class Noise:
    cores: int
    wall_s: float
    load_mean: float
    own_cores: float
    """Average CPU this bench used (its processes, broker and workers included), in cores."""
    others_cores: float
    """Average CPU every other process on the machine used during the run, in cores."""


@dataclass
class NoiseMonitor:
    """`sample()` now and then (the load average); `finish()` at the end, before the broker stops."""

    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    _loads: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._wall = time.monotonic()
        self._busy, _ = busy_ticks()
        self._own = own_cpu_seconds() + live_children_cpu_seconds()
        self.sample()

    def sample(self) -> None:
        self._loads.append(os.getloadavg()[0])

    def finish(self) -> Noise:
        self.sample()
        wall = time.monotonic() - self._wall
        busy = (busy_ticks()[0] - self._busy) / os.sysconf("SC_CLK_TCK")
        own = own_cpu_seconds() + live_children_cpu_seconds() - self._own
        return Noise(
            self.cores,
            wall,
            statistics.fmean(self._loads),
            own / wall,
            max(0.0, busy - own) / wall,
        )


def warnings(ceilings: Mapping[str, Sequence[float]], noise: Noise | None) -> list[str]:
    """One line per reason not to trust the medians; empty when the run looks clean.

    >>> warnings({"raw": [100, 100, 140]}, None)
    ['raw ceiling spread 40% of its median (> 25%): runs disagree']
    """
    found = [
        f"{name} ceiling spread {spread(runs):.0%} of its median (> {MAX_SPREAD:.0%}): runs disagree"
        for name, runs in ceilings.items()
        if spread(runs) > MAX_SPREAD
    ]
    if noise is not None:
        if noise.load_mean > noise.cores:
            found.append(
                f"load average {noise.load_mean:.1f} over the run > {noise.cores} cores: "
                "processes queued for CPU"
            )
        if noise.others_cores > MAX_OTHERS_SHARE * noise.cores:
            found.append(
                f"other processes used {noise.others_cores:.2f} of {noise.cores} cores during the run "
                f"(> {MAX_OTHERS_SHARE:.0%})"
            )
    return found
