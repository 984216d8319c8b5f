"""Tags through the real pipeline: live profiles equal a from-scratch recomputation per person."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
import urllib.request

import orjson
import pytest

from stream_app.sample import generate
from stream_app.tags.engine import TagEngine
from tests.integration.conftest import REPO
from tests.integration.helpers import decoded, final_one_id

pytestmark = pytest.mark.integration

DAY = generate(people=500, days=3, seed=31)


def _get(port: int, path: str) -> dict:
    url = f"http://127.0.0.1:{port}{path}"
    return orjson.loads(urllib.request.urlopen(url, timeout=10).read())


def test_live_tags_equal_a_recomputation_after_merges(env):
    topo = env.topology
    with env.local_run() as run:
        run.stream_events(DAY.lines)
        run.finish_input(close_event_time=True, timeout=300)
        outputs = decoded(run.read_outputs())
        merges = outputs[topo.topics.identity_merges.name]
        final = final_one_id(merges)
        people: dict[str, dict[str, dict]] = {}
        for event in outputs[topo.topics.resolved.name]:
            people.setdefault(final(event["one_id"]), {})[event["event_id"]] = event
        assert merges, "the population should cause merges"
        merged_people = {final(m["one_id"]) for m in merges}

        engine = TagEngine.from_specs(topo.tags)
        checked = 0
        for one_id, events in people.items():
            live = _get(run.web_port, f"/profiles/{one_id}")
            state = None
            for event in sorted(events.values(), key=lambda e: e["event_time_ms"]):
                state, _ = engine.apply(state, event, event["event_time_ms"])
            assert live["tags"] == engine.read(state, live["as_of_ms"]), one_id
            checked += 1
        assert checked == len(people) > 300
        assert merged_people <= set(people)

        # A merged one_id and an identifier both lead to the survivor's profile.
        some_merge = merges[0]
        old = _get(run.web_port, f"/profiles/{some_merge['merged_one_id']}")
        assert old["one_id"] == final(some_merge["one_id"])
        member = next(e for e in outputs[topo.topics.resolved.name] if "member_id" in e["identities"])
        key = urllib.parse.quote(f"member_id:{member['identities']['member_id']}", safe="")
        assert _get(run.web_port, f"/profiles/{key}")["one_id"] == final(member["one_id"])

        # The CLI hashes a raw phone the way ingest does and prints the same profile.
        raw = next(
            orjson.loads(line) for line in DAY.lines if line.startswith(b"{") and b'"phone":"1' in line
        )
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "stream_app",
                "profile",
                f"phone:{raw['identities']['phone']}",
                "--json",
                "--web",
                f"http://127.0.0.1:{run.web_port}",
                "--topology",
                str(env.topology_path),
            ],
            cwd=REPO,
            capture_output=True,
            timeout=60,
            env=dict(os.environ, STREAM_APP_PII_KEY=env.settings.pii_key.get_secret_value()),
        )
        assert cli.returncode == 0, cli.stderr.decode()
        shown = orjson.loads(cli.stdout)
        assert any(k.startswith("phone:h:") for k in shown["identifiers"])
        assert set(shown["tags"]) == set(topo.tags)

    updates = outputs[topo.topics.profile_updates.name]
    assert updates and all(u["changed"] for u in updates)
    assert any("vip" in u["changed"] for u in updates)
