"""The worker's summary line, from a real registry of its metrics."""

from __future__ import annotations

import asyncio
import logging

from stream_app.metrics import Metrics
from stream_app.worker.summary_log import SummaryLog


def test_the_line_says_what_moved_since_the_last_one(caplog):
    metrics = Metrics()
    clock = iter([100.0, 130.0, 160.0])
    summary = SummaryLog(metrics, lambda: next(clock))
    for _ in range(600):
        metrics.messages_in.inc()
    metrics.events_valid.labels("order_paid", "pos").inc(590)
    metrics.events_dlq.labels("invalid_json").inc(7)
    metrics.events_dlq.labels("schema_violation").inc(3)
    metrics.actions_emitted.labels("welcome", "coupon").inc(2)
    with caplog.at_level(logging.INFO, logger="stream_app.summary"):
        asyncio.run(summary.log())
        asyncio.run(summary.log())
    assert [r.getMessage() for r in caplog.records] == [
        "last 30 s: 600 messages in (20/s), 590 valid, 10 to the DLQ, 2 actions",
        "last 30 s: idle",
    ]
