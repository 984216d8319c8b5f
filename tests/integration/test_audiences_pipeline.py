"""Audiences through the real pipeline: the compacted `audience-members`, read to its end, holds
exactly the memberships an independent recomputation gives at the end of event time, merges
included; the CLI, the metric and profile look-ups say the same."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from datetime import datetime

import orjson
import pytest

from stream_app.expressions import compile_expression
from stream_app.sample import generate
from stream_app.sample.generator import SHANGHAI
from stream_app.tags.engine import TagEngine
from tests.integration.conftest import REPO
from tests.integration.helpers import final_one_id

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000
# Three days in September, then a few people come back in late November: by the end of event
# time the September buyers have lapsed (60 days), windows have emptied, registrations aged.
SEPTEMBER = generate(people=300, days=3, seed=12, start=datetime(2026, 9, 20, tzinfo=SHANGHAI))


def _november(lines: list[bytes]) -> list[bytes]:
    members = []
    for line in lines:
        try:  # the generated malformed lines are not JSON, or not a mapping
            with_member = orjson.loads(line)["identities"]["member_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
        if isinstance(with_member, str) and with_member and with_member not in members:
            members.append(with_member)
    back = []
    for n, member in enumerate(members[:12]):
        for minute in (0, 5):
            back.append(
                {
                    "event_id": f"nov-{n}-{minute}",
                    "event_type": "product_view",
                    "occurred_at": f"2026-11-25T10:{minute:02d}:00+08:00",
                    "channel": "app",
                    "identities": {"member_id": member},
                    "properties": {"category": "bags", "sku": "B1"},
                }
            )
    back.append(
        {
            "event_id": "nov-register",
            "event_type": "member_register",
            "occurred_at": "2026-11-25T12:00:00+08:00",
            "channel": "miniprogram",
            "identities": {"member_id": "M-NOVEMBER", "phone": "13912345678"},
        }
    )
    return [orjson.dumps(event) for event in back]


def _oracle(topo, events: list[dict], end_ms: int) -> set[str]:
    """Memberships from scratch: tags folded in time order, read at the end, rule-engine's own
    evaluate on each condition; sub-keys in order, at most max_keys."""
    engine = TagEngine.from_specs(topo.tags)
    state = None
    for event in sorted(events, key=lambda e: (e["event_time_ms"], e["event_id"])):
        state, _ = engine.apply(state, event, event["event_time_ms"])
    tags = engine.read(state, end_ms)
    context = {**tags, "idle_days": (end_ms - max(e["event_time_ms"] for e in events)) / DAY_MS}
    found = set()
    for name, spec in topo.audiences.items():
        condition = compile_expression(spec.condition)
        if spec.by is None:
            if condition.evaluate(context):
                found.add(name)
            continue
        held = [k for k in sorted(tags[spec.by]) if condition.evaluate({**context, "key": k})]
        found |= {f"{name}[{k}]" for k in held[: spec.max_keys]}
    return found


def _get(url: str) -> bytes:
    return urllib.request.urlopen(url, timeout=10).read()


def test_audience_members_equal_a_recomputation_at_the_end_of_event_time(env):
    topo = env.topology
    t = topo.topics
    lines = SEPTEMBER.lines + _november(SEPTEMBER.lines)
    with env.local_run() as run:
        run.stream_events(lines)
        run.finish_input(close_event_time=True, timeout=300)
        outputs = run.read_outputs()
        metrics = _get(f"http://127.0.0.1:{run.web_port}/metrics").decode()

        resolved = [orjson.loads(r.value) for r in outputs[t.resolved.name]]
        final = final_one_id([orjson.loads(r.value) for r in outputs[t.identity_merges.name]])
        people: dict[str, dict[str, dict]] = {}
        for event in resolved:
            people.setdefault(final(event["one_id"]), {})[event["event_id"]] = event
        end_ms = max(e["event_time_ms"] for e in resolved)
        expected = {
            f"{membership}:{one_id}"
            for one_id, events in people.items()
            for membership in _oracle(topo, list(events.values()), end_ms)
        }

        latest: dict[str, bytes | None] = {}
        for record in outputs[t.audience_members.name]:  # per key in order: compaction's view
            latest[record.key.decode()] = record.value
        members = {key for key, value in latest.items() if value is not None}
        assert members == expected
        by_audience = {
            name: sum(1 for m in members if m.split("[")[0].split(":")[0] == name) for name in topo.audiences
        }
        assert all(by_audience.values()), by_audience  # every default audience has members here

        # The changes replay to the same memberships, each a real change; lapses fired with no event.
        held: set[str] = set()
        causes = set()
        for record in outputs[t.audience_changes.name]:
            change = orjson.loads(record.value)
            sub = f"[{change['sub_key']}]" if change["sub_key"] is not None else ""
            key = f"{change['audience']}{sub}:{change['one_id']}"
            assert (key in held) == (change["change"] == "exit"), change
            (held.discard if change["change"] == "exit" else held.add)(key)
            causes.add((change["audience"], change["change"], change["cause"]))
        assert held == members
        assert ("lapsed_buyers", "enter", "expired") in causes
        assert ("category_interest", "exit", "expired") in causes
        assert ("new_members", "exit", "expired") in causes

        # The metric, the profile look-up and the CLI say the same.
        gauge = {
            line.split('"')[1]: float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("stream_app_audience_members{")
        }
        assert gauge == {name: float(n) for name, n in by_audience.items()}
        someone = next(m for m in members if m.startswith("high_value:")).split(":", 1)[1]
        profile = orjson.loads(_get(f"http://127.0.0.1:{run.web_port}/profiles/{someone}"))
        assert "high_value" in profile["audiences"]

        cli_env = dict(os.environ, STREAM_APP_PII_KEY=env.settings.pii_key.get_secret_value())
        common = ["--broker", env.settings.broker, "--topology", str(env.topology_path)]
        shown = subprocess.run(
            [sys.executable, "-m", "stream_app", "audiences", *common, "--json"],
            cwd=REPO,
            capture_output=True,
            timeout=120,
            env=cli_env,
            check=True,
        )
        assert orjson.loads(shown.stdout)["sizes"] == by_audience
        exported = subprocess.run(
            [sys.executable, "-m", "stream_app", "audiences", "export", "new_members", *common],
            cwd=REPO,
            capture_output=True,
            timeout=120,
            env=cli_env,
            check=True,
        )
        rows = [orjson.loads(line) for line in exported.stdout.splitlines()]
        assert {f"new_members:{row['one_id']}" for row in rows} == {
            m for m in members if m.startswith("new_members:")
        }
        identifiers = [i for row in rows for i in row["identifiers"]]
        assert identifiers and all(i.split(":", 1)[1].startswith("h:") for i in identifiers)
        assert b"13912345678" not in exported.stdout and b"M-NOVEMBER" not in exported.stdout
