"""One-ID through the real pipeline on the embedded broker: accuracy, two workers, graph tools."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import urllib.request

import networkx as nx
import orjson
import pytest

from stream_app.sample import generate
from stream_app.sample.scoring import score
from tests.integration.conftest import REPO
from tests.integration.helpers import decoded, metric, predicted_owners

pytestmark = pytest.mark.integration

DAY = generate(people=1500, days=2, seed=21)
REPLAY = [
    orjson.dumps({**event, "event_id": event["event_id"] + "-again"})
    for event in (orjson.loads(line) for line in DAY.lines[:3000] if line.startswith(b'{"event_id":"ev-'))
]
TRUTH = {**DAY.truth, **{f"{event_id}-again": person for event_id, person in DAY.truth.items()}}


def _run(env, workers: int = 1) -> tuple[dict[str, list[dict]], list[int]]:
    topo = env.topology
    with env.local_run() as run:
        for index in range(1, workers):
            run.start_worker(index)
        run.stream_events(DAY.lines)
        run.finish_input(close_event_time=False, timeout=300)
        fast_before = _fast_path(run, workers)
        # The same people again, later: nearly every identifier is known by now, so each worker's
        # replica of the identifier map answers and these events never wait for the linker.
        run.stream_events(REPLAY)
        run.finish_input(close_event_time=True, timeout=300)
        fast = _fast_path(run, workers) - fast_before
        assert fast >= 0.8 * len(REPLAY), f"only {fast} of {len(REPLAY)} known events took the fast path"
        outputs = decoded(run.read_outputs())
        processed = [metric(run.web_ports[i], "stream_app_messages_in_total") for i in range(workers)]
        if workers == 1:
            _check_graph_tools(run, env, outputs)
        else:
            _check_lookups_route(run, env, outputs)
    assert outputs[topo.topics.resolved.name], "nothing resolved"
    return outputs, processed


def _check_lookups_route(run, env, outputs) -> None:
    """Any worker answers a profile lookup: the one not owning the person forwards the request."""
    owners = sorted(set(_owners(env, outputs).values()))[:60]
    for one_id in owners:
        answers = [
            orjson.loads(
                urllib.request.urlopen(f"http://127.0.0.1:{port}/profiles/{one_id}", timeout=10).read()
            )
            for port in (run.web_ports[0], run.web_ports[1])
        ]
        assert answers[0] == answers[1] and answers[0]["one_id"] == one_id


def _fast_path(run, workers: int) -> float:
    return sum(metric(run.web_ports[i], "stream_app_identity_fast_path_total") for i in range(workers))


def _owners(env, outputs) -> dict[str, str]:
    t = env.topology.topics
    return predicted_owners(
        outputs[t.resolved.name], outputs[t.identity_merges.name], outputs[t.identity_conflicts.name]
    )


def _score(env, outputs):
    resolved = outputs[env.topology.topics.resolved.name]
    events = {e["event_id"]: [f"{t}:{v}" for t, v in e["identities"].items()] for e in resolved}
    return score(events.items(), TRUTH, _owners(env, outputs))


def _check_graph_tools(run, env, outputs) -> None:
    """`stream-app graph` against the live worker: a person by raw phone, hubs, stats."""
    phone_event = next(
        orjson.loads(line)
        for line in DAY.lines
        if line.startswith(b"{") and b'"phone":"1' in line and b"member_id" in line
    )
    cli_env = dict(os.environ, STREAM_APP_PII_KEY=env.settings.pii_key.get_secret_value())
    web = f"http://127.0.0.1:{run.web_port}"

    def cli(*args: str) -> bytes:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "stream_app",
                "graph",
                *args,
                "--web",
                web,
                "--topology",
                str(env.topology_path),
            ],
            cwd=REPO,
            env=cli_env,
            capture_output=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout

    person = orjson.loads(cli("phone:" + phone_event["identities"]["phone"]))
    nodes = {n["id"]: n for n in person["graph"]["nodes"]}
    assert f"member_id:{phone_event['identities']['member_id']}" in nodes
    assert any(n.startswith("phone:h:") for n in nodes) and not any("phone:1" in n for n in nodes)
    events = [n for n in nodes if n.startswith("event:")]
    edges = person["graph"]["edges"]
    assert events and all(e["source"] in nodes and e["target"] in nodes for e in edges)
    assert {e["source"] for e in edges} | {e["target"] for e in edges} >= set(events)

    graphml = nx.read_graphml(io.BytesIO(cli(person["one_id"], "--format", "graphml")))
    assert set(graphml.nodes) == set(nodes)

    hubs = orjson.loads(cli("hubs"))
    tablets = {h["identifier"] for h in hubs["hubs"] if h["identifier"].startswith("device_id:")}
    assert tablets, "family tablets should show up as hubs"

    stats = orjson.loads(cli("stats"))
    owners = _owners(env, outputs)
    assert stats["identifiers"] == len(owners)
    assert stats["profiles"] == len(set(owners.values()))


def test_identity_accuracy_against_the_truth(env):
    outputs, _ = _run(env)
    topo = env.topology.topics
    result = _score(env, outputs)
    assert result.people > 1000 and result.allowed_pairs > 2000
    assert result.precision == 1.0
    assert result.recall == 1.0
    assert outputs[topo.identity_merges.name] and outputs[topo.identity_conflicts.name]
    reasons = {c["reason"] for c in outputs[topo.identity_conflicts.name]}
    assert "shared_identifier" in reasons


def test_two_workers_give_the_same_clusters_as_one(env, make_env):
    one, _ = _run(env, workers=1)
    other = make_env()
    two, processed = _run(other, workers=2)
    assert all(n > 0 for n in processed), f"a worker got no partitions: {processed}"

    def clusters(e, outputs):
        by_owner: dict[str, set[str]] = {}
        for key, owner in _owners(e, outputs).items():
            if not key.startswith("device_id:"):  # a shared tablet's owner depends on arrival order
                by_owner.setdefault(owner, set()).add(key)
        return {frozenset(keys) for keys in by_owner.values()}

    assert clusters(env, one) == clusters(other, two)
    assert _score(other, two).precision == 1.0
