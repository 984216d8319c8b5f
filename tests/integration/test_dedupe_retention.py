"""De-duplication remembers event ids for `dedupe.retention` of event time, then forgets them."""

from __future__ import annotations

import time

import orjson
import pytest

from tests.integration.helpers import metric, valid_event

pytestmark = pytest.mark.integration


def _at(n: int, hour: int, prefix: str) -> bytes:
    when = f"2026-11-22T{hour:02d}:{n % 60:02d}:00+08:00"
    return valid_event(n, event_id=f"{prefix}-{n:04d}", occurred_at=when)


def _until(port: int, name: str, expected: float, timeout: float = 90) -> float:
    """Poll a worker's metric until it reaches `expected` (sweeps run on watermark ticks)."""
    deadline = time.monotonic() + timeout
    while (value := metric(port, name)) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    return value


def test_event_ids_are_forgotten_after_the_retention_and_only_then(make_env):
    # One input partition: events are produced without a key, so with several partitions one that
    # got old events but none of the new ones (the sticky partitioner decides) would hold event
    # time back at the old hour, rightly, and nothing would be past the retention yet.
    env = make_env(partitions={"touchpoints": 1}, dedupe={"retention": "1h"})
    old = [_at(n, 8, "old") for n in range(200)]
    new = [_at(n, 12, "new") for n in range(200)]
    with env.local_run() as run:
        port = run.web_port
        run.stream_events(old)
        run.finish_input(close_event_time=False, timeout=120)
        remembered_before = _until(port, "stream_app_dedupe_event_ids", len(old))
        run.stream_events(new)  # event time moves 4 h on: the old ids are past the retention
        run.finish_input(close_event_time=False, timeout=120)
        expired = _until(port, "stream_app_dedupe_event_ids_expired_total", len(old))
        remembered_after = _until(port, "stream_app_dedupe_event_ids", len(new))
        # A copy of a forgotten event passes again; a copy of a remembered one does not.
        run.stream_events([old[0], new[0]])
        run.finish_input(close_event_time=True, timeout=120)
        duplicates = metric(port, "stream_app_events_duplicate_total")
        resolved = [orjson.loads(r.value) for r in run.read_outputs()[env.topology.topics.resolved.name]]
    assert (remembered_before, expired, remembered_after) == (len(old), len(old), len(new))
    assert duplicates == 1
    copies = [e["event_id"] for e in resolved if e["event_id"] in ("old-0000", "new-0000")]
    assert sorted(copies) == ["new-0000", "old-0000", "old-0000"]
