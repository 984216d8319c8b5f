"""One line at info per interval: what the worker did since the last one.

A quiet log is easy to read only if it still says the worker is alive and what it is doing; the
per-event detail lives in /metrics. The line is made from the worker's own counters (no second
count to drift from them), and they carry no PII, so neither does the line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from stream_app.metrics import Metrics

log = logging.getLogger("stream_app.summary")

INTERVAL_S = 30.0
"""How often the worker writes its summary line."""

COUNTED: dict[str, str] = {
    "messages_in": "messages in",
    "events_valid": "valid",
    "events_dlq": "to the DLQ",
    "events_duplicate": "duplicates",
    "identity_merges": "merges",
    "actions_emitted": "actions",
    "actions_suppressed": "suppressed",
}
"""`Metrics` counter -> its words in the line (summed over labels), in the line's order."""


def totals(metrics: Metrics) -> dict[str, float]:
    """Each counted counter summed over its labels (only these counters are read, not the whole
    registry with its scrape-time collectors)."""
    return {
        name: sum(
            sample.value
            for family in getattr(metrics, name).collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        )
        for name in COUNTED
    }


def line(before: Mapping[str, float], now: Mapping[str, float], seconds: float) -> str:
    """The summary of what changed between two `totals`.

    >>> line({"messages_in": 10}, {"messages_in": 1510}, 30)
    'last 30 s: 1,500 messages in (50/s)'
    >>> line({}, {}, 30)
    'last 30 s: idle'
    """
    moved = {name: now.get(name, 0.0) - before.get(name, 0.0) for name in COUNTED}
    parts = [f"{moved[name]:,.0f} {words}" for name, words in COUNTED.items() if moved[name]]
    if not parts:
        return f"last {seconds:.0f} s: idle"
    messages = moved["messages_in"]
    if messages and seconds > 0:
        parts[0] += f" ({messages / seconds:,.0f}/s)"
    return f"last {seconds:.0f} s: " + ", ".join(parts)


class SummaryLog:
    """A Faust timer's body: logs `line` for the time since its previous call."""

    def __init__(self, metrics: Metrics, clock: Callable[[], float]):
        self.metrics, self.clock = metrics, clock
        self.before, self.at = totals(metrics), clock()

    async def log(self) -> None:
        now, at = totals(self.metrics), self.clock()
        log.info("%s", line(self.before, now, at - self.at))
        self.before, self.at = now, at
