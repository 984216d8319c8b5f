"""The over-merge attack stays contained: one fake phone on thousands of member accounts.

Without merge protection one phone shared by every member would make them all one person. The
member_id limit (1 per profile) refuses each link instead: every member stays a person of their
own, each refusal is on `identity-conflicts` and in the refused-links metric, and the phone shows
up as a hub whose people count is the real one (it used to stop at a silent 50).

The 10,000 members run through the pure resolver (the identity decisions are all its; the
pipeline around it only carries them); a smaller population runs through the real topology for
the topic, the metric and `stream-app graph hubs`.
"""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest

from stream_app.config import load_topology
from stream_app.identity.graph import hubs
from stream_app.identity.model import IdentityRules
from stream_app.identity.resolver import IdentityResolver
from stream_app.identity.store import MappingIdentityStore
from tests.faults.verifier import InputRules
from tests.integration.conftest import REPO
from tests.integration.helpers import decoded, final_one_id, metric

FAKE_PHONE = "13912345678"
SPELLINGS = [FAKE_PHONE, f"+86 {FAKE_PHONE[:3]}-{FAKE_PHONE[3:7]}-{FAKE_PHONE[7:]}", f"0086 {FAKE_PHONE}"]


def test_ten_thousand_members_on_one_phone_stay_ten_thousand_people():
    members = 10_000
    store = MappingIdentityStore()
    identity = load_topology(REPO / "topology.yaml").identity
    rules = IdentityRules(dict(identity.limits), frozenset(identity.shareable_types))
    resolver = IdentityResolver(store, rules)
    phone = "phone:h:fake"
    conflicts = []
    for n in range(members):
        result = resolver.resolve([f"member_id:M{n:06d}", phone], f"e{n}", 1000 + n)
        assert not result.merges
        conflicts += result.conflicts
    assert len(list(store.profiles())) == members
    assert len({store.owner(f"member_id:M{n:06d}") for n in range(members)}) == members
    assert len(conflicts) == members - 1
    assert {(c.reason, c.refused) for c in conflicts} == {("limit:member_id", (phone,))}

    table = hubs(store.refusals())
    (hub,) = table["hubs"]
    assert hub["identifier"] == phone and hub["refused_links"] == members - 1
    assert hub["people_estimated"], "past the sketch's size the count is an estimate and says so"
    assert 0.85 * members <= hub["people"] <= 1.15 * members, hub


@pytest.mark.integration
def test_the_attack_on_the_pipeline_shows_in_conflicts_metrics_and_graph_hubs(env):
    members = 200  # more than the 50 the count used to stop at; exact below the sketch's 256
    lines = [
        orjson.dumps(
            {
                "event_id": f"attack-{n:05d}",
                "event_type": "member_register",
                "occurred_at": f"2026-11-22T10:{n // 60 % 60:02d}:{n % 60:02d}+08:00",
                "channel": "app",
                "identities": {"member_id": f"MX{n:06d}", "phone": SPELLINGS[n % len(SPELLINGS)]},
            }
        )
        for n in range(members)
    ]
    topo = env.topology
    t = topo.topics
    key = env.settings.pii_key.get_secret_value()
    phone_key = InputRules.from_topology(topo, key).key("phone", "+86" + FAKE_PHONE)
    with env.local_run() as run:
        run.stream_events(lines)
        run.finish_input(close_event_time=True, timeout=120)
        outputs = decoded(run.read_outputs())
        refused = metric(run.web_port, "stream_app_identity_refused_links_total", reason="limit")
        created = metric(run.web_port, "stream_app_identity_new_people_total")
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "stream_app",
                "graph",
                "hubs",
                "--web",
                f"http://127.0.0.1:{run.web_port}",
            ],
            cwd=REPO,
            env=dict(os.environ, STREAM_APP_PII_KEY=key, STREAM_APP_TOPOLOGY=str(env.topology_path)),
            capture_output=True,
            timeout=60,
        )
    final = final_one_id(outputs[t.identity_merges.name])
    people = {final(e["one_id"]) for e in outputs[t.resolved.name]}
    assert len(outputs[t.resolved.name]) == members and len(people) == members
    conflicts = outputs[t.identity_conflicts.name]
    assert len(conflicts) == members - 1
    assert {c["reason"] for c in conflicts} == {"limit:member_id"}
    assert all(c["refused"] == [{"type": "phone", "value": phone_key.split(":", 1)[1]}] for c in conflicts)
    assert (refused, created) == (members - 1, members)

    assert cli.returncode == 0, cli.stderr.decode()
    shown = orjson.loads(cli.stdout)
    assert shown["total"] == 1
    assert shown["hubs"] == [
        {"identifier": phone_key, "people": members, "people_estimated": False, "refused_links": members - 1}
    ]
    # Piped, the command answers in JSON alone (its table is for a terminal).
    assert phone_key[:20] not in cli.stderr.decode()
    assert FAKE_PHONE not in cli.stdout.decode() + cli.stderr.decode()
