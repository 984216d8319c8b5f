"""The compose stack's files as data, and the metric names their queries read (for the tests)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
PROMETHEUS = REPO / "deploy/prometheus/prometheus.yml"
RULES = REPO / "deploy/prometheus/rules/stream_app.yml"
DASHBOARD = REPO / "deploy/grafana/dashboards/stream_app.json"
GRAFANA_DATASOURCES = REPO / "deploy/grafana/provisioning/datasources/prometheus.yml"
GRAFANA_PROVIDERS = REPO / "deploy/grafana/provisioning/dashboards/stream_app.yml"

GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "30s"}
"""Grafana's built-in variables, as Grafana puts durations in their place before it queries."""
PROMETHEUS_OWN = frozenset({"up"})
"""Series Prometheus makes itself for every target; no worker exports them."""


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables put in) for every query of the dashboard."""
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            yield panel["title"], expr


def all_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every alert and dashboard query."""
    rules = [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    return rules + list(dashboard_exprs())


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects, from its syntax tree (raises ValueError if invalid)."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            names.update(m.value for m in node.matchers.matchers if m.name == "__name__")

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def queried_metric_names() -> dict[str, set[str]]:
    """Metric name -> where it is queried (alerts and dashboard panels), less Prometheus's own."""
    where: dict[str, set[str]] = {}
    for place, expr in all_queries():
        for name in metric_names(expr) - PROMETHEUS_OWN:
            where.setdefault(name, set()).add(place)
    return where
