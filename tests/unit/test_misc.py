import socket

import pytest
from prometheus_client import CollectorRegistry

from stream_app.io.urls import bootstrap_servers, is_embedded, normalize_broker_url
from stream_app.metrics import Metrics
from stream_app.sample import generate
from tests.unit.test_topology import REPO


def test_broker_urls():
    assert normalize_broker_url("h:9092") == "kafka://h:9092"
    assert bootstrap_servers("kafka://a:1;b:2") == "a:1,b:2"
    assert bootstrap_servers("tansu://127.0.0.1:5") == "127.0.0.1:5"
    assert bootstrap_servers("kafka://a") == "a:9092"
    assert is_embedded("tansu://x:1") and not is_embedded("kafka://x:1")
    with pytest.raises(ValueError, match="unsupported"):
        normalize_broker_url("http://x")


def test_metric_labels_stay_bounded():
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.valid("order_paid", "pos")
    metrics.valid("anything-a-producer-invents", "13800138000")
    assert (
        registry.get_sample_value(
            "stream_app_events_valid_total", {"event_type": "order_paid", "channel": "pos"}
        )
        == 1
    )
    assert (
        registry.get_sample_value(
            "stream_app_events_valid_total", {"event_type": "other", "channel": "other"}
        )
        == 1
    )


def test_generator_is_deterministic_and_knows_the_truth():
    a, b = generate(people=80, days=2, seed=3), generate(people=80, days=2, seed=3)
    assert a.lines == b.lines
    assert generate(people=80, days=2, seed=4).lines != a.lines
    assert a.malformed >= 0 and len(a.truth) == len(a.lines) - a.malformed - a.duplicates
    assert len(set(a.truth.values())) > 30


def test_the_worker_binds_loopback_by_default_and_advertises_a_reachable_address():
    from stream_app.config import Settings, load_topology
    from stream_app.worker.app import faust_settings

    topology = load_topology(REPO / "topology.yaml")
    conf = faust_settings(Settings(web_port=7001), topology)
    assert (conf["web_bind"], conf["canonical_url"]) == ("127.0.0.1", "http://127.0.0.1:7001")
    assert not any(conf[f"web_{view}_enabled"] for view in ("tables", "router", "graph", "stats"))

    everywhere = faust_settings(Settings(web_host="0.0.0.0", web_port=7001), topology)
    assert everywhere["web_bind"] == "0.0.0.0"
    assert everywhere["canonical_url"] == f"http://{socket.gethostname()}:7001"

    told = Settings(web_host="0.0.0.0", web_advertised_url="http://worker-2.internal:6066/")
    assert faust_settings(told, topology)["canonical_url"] == "http://worker-2.internal:6066"
