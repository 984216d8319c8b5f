"""The pipeline on two workers in one consumer group: their combined rate, measured from outside
as the one-worker rows are (first event produced -> `finish_input` returns: every event fully
processed by the last stage), on the same broker and the same lines.

Both workers are started and ready (the group has rebalanced: worker 1 has its partitions, worker 0
has kept the rest) before the warm-up events, so no rebalance falls inside the clock. Each worker's
share of the input messages (its `stream_app_messages_in_total`) says whether both worked: a worker
that got no input partitions makes the combined rate a one-worker rate, and the row says so. The
two workers share the machine's two cores with the broker and this process, and the linker topic
has one partition, so one of them links every new person.
"""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.rows import Timed, bench_settings, cold_then_warm, delete_topics, isolated_topology
from stream_app.config import load_topology
from stream_app.runner import LocalRun

WORKERS = 2
OVERHEAD_S = 30.0
"""A second worker's start and the group's rebalance, beside one worker's start and markers."""
INPUT_METRIC = "stream_app_messages_in_total"


@dataclass
class TwoWorkersRun:
    cold: Timed
    warm: Timed
    events: int
    """Lines the cold phase took (warm-up included), as `rows.pipeline` counts them."""
    shares: list[float] = field(default_factory=list)
    """Each worker's share of the input messages it read, over the whole run."""


def two_workers(
    broker_url: str,
    bootstrap: str,
    tmp: Path,
    lines: list[bytes],
    plan: Callable[[float], int] | None = None,
) -> TwoWorkersRun:
    """`rows.pipeline`'s cold and warm phases on two workers of one group (`LocalRun.start_worker`,
    as the chaos and two-worker tests run them). `plan`: as for `rows.pipeline`."""
    tag = f"tw{uuid.uuid4().hex[:6]}"
    topology_path = isolated_topology(tmp, tag)
    settings = bench_settings(broker_url, topology_path, tmp / tag, tag)
    with LocalRun(settings, load_topology(topology_path)) as run:
        try:
            for index in range(1, WORKERS):
                run.start_worker(index)
            for index in range(WORKERS - 1, -1, -1):  # the newest first: its readiness ends the rebalance
                run.wait_ready(index, timeout=180)
            cold, warm, used = cold_then_warm(run, lines, plan)
            counts = [input_messages(run.web_ports[index]) for index in range(WORKERS)]
        finally:
            run.stop()
            delete_topics(bootstrap, (tag,))
    total = sum(counts)
    return TwoWorkersRun(cold, warm, len(used), [c / total if total else 0.0 for c in counts])


def input_messages(port: int) -> float:
    """A worker's count of messages read from the input topic, from its /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == INPUT_METRIC
    )
