"""One line at info per interval: what the worker did since the last one.

A quiet log is easy to read only if it still says the worker is alive and what it is doing; the
per-event detail lives in /metrics. The line is made from the worker's own counters (no second
count to drift from them), and they carry no PII, so neither does the line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry

log = logging.getLogger("stream_app.summary")

INTERVAL_S = 30.0
"""How often the worker writes its summary line."""

COUNTED: dict[str, str] = {
    "stream_app_messages_in_total": "messages in",
    "stream_app_events_valid_total": "valid",
    "stream_app_events_dlq_total": "to the DLQ",
    "stream_app_events_duplicate_total": "duplicates",
    "stream_app_identity_merges_total": "merges",
    "stream_app_actions_emitted_total": "actions",
    "stream_app_actions_suppressed_total": "suppressed",
}
"""Counter sample name -> its words in the line (summed over labels), in the line's order."""


def totals(registry: CollectorRegistry) -> dict[str, float]:
    """Each counted sample summed over its labels."""
    sums = dict.fromkeys(COUNTED, 0.0)
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in sums:
                sums[sample.name] += sample.value
    return sums


def line(before: Mapping[str, float], now: Mapping[str, float], seconds: float) -> str:
    """The summary of what changed between two `totals`.

    >>> line({"stream_app_messages_in_total": 10}, {"stream_app_messages_in_total": 1510}, 30)
    'last 30 s: 1,500 messages in (50/s)'
    >>> line({}, {}, 30)
    'last 30 s: idle'
    """
    moved = {name: now.get(name, 0.0) - before.get(name, 0.0) for name in COUNTED}
    parts = [f"{moved[name]:,.0f} {words}" for name, words in COUNTED.items() if moved[name]]
    if not parts:
        return f"last {seconds:.0f} s: idle"
    messages = moved["stream_app_messages_in_total"]
    if messages and seconds > 0:
        parts[0] += f" ({messages / seconds:,.0f}/s)"
    return f"last {seconds:.0f} s: " + ", ".join(parts)


class SummaryLog:
    """A Faust timer's body: logs `line` for the time since its previous call."""

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float]):
        self.registry, self.clock = registry, clock
        self.before, self.at = totals(registry), clock()

    async def log(self) -> None:
        now, at = totals(self.registry), self.clock()
        log.info("%s", line(self.before, now, at - self.at))
        self.before, self.at = now, at
