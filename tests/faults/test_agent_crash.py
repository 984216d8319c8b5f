"""A stage that raises stops its worker, loudly, instead of leaving a live process that reads no more.

A corrupt record on an internal topic (here: not JSON, on the de-duplicator's input) is a bug or an
outside writer, not bad input with a DLQ answer. Before, Faust's supervisor logged the crash and
kept the process up with the stage dead: a run waited for its end forever.
"""

from __future__ import annotations

import time

import pytest

from stream_app.io.kafka import make_producer
from tests.integration.helpers import valid_event

pytestmark = pytest.mark.integration


def test_a_stage_that_raises_stops_the_worker_with_the_reason_in_its_log(env):
    internal = env.topology.internal_topics
    with env.local_run() as run:
        run.stream_events([valid_event(n) for n in range(20)])
        run.finish_input(close_event_time=False, timeout=120)
        worker = run.workers[0]
        producer = make_producer(run.bootstrap)
        producer.produce(internal.events_by_id.name, value=b"{not json", partition=0)
        producer.flush(10)
        deadline = time.monotonic() + 60
        while worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        code = worker.poll()
        log = run.worker_log.read_text(errors="replace")
        run.workers.clear()  # it has exited (or is killed by the runner's stop below)
        if code is None:
            worker.kill()
    assert code is not None, "the worker kept running with a crashed stage"
    assert code != 0
    assert "JSONDecodeError" in log
