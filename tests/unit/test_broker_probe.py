"""The broker monitor's probe answers None when the broker is slow, never raises (no broker)."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

from stream_app.metrics import Metrics
from stream_app.worker.broker_monitor import BrokerMonitor, WorkerTopics


class _Metadata:
    cluster_id = "c1"
    topics = {"t-in": object()}


class _SlowAdmin:
    """Lists topics, then never answers a describe in time (as a loaded broker did in CI)."""

    def list_topics(self, timeout: float) -> _Metadata:
        return _Metadata()

    def describe_topics(self, topics, request_timeout: float) -> dict[str, Future]:
        return {"t-in": Future()}  # never resolved: result(timeout) raises TimeoutError


def test_a_describe_that_times_out_is_no_answer_not_a_crash(tmp_path: Path):
    monitor = BrokerMonitor(
        "kafka://127.0.0.1:1",
        tmp_path,
        WorkerTopics(watched=["t-in"], written={}, inputs={}, group="g", claim="c"),
        Metrics(),
    )
    monitor._admin = _SlowAdmin()  # type: ignore[assignment]
    assert monitor.probe() is None
