"""The ingest stage on the real Faust topology against the embedded broker."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from stream_app.io.kafka import iter_topics
from tests.integration.helpers import metric, valid_event

pytestmark = pytest.mark.integration

INVALID = {
    "invalid_json": [b"not json", b'{"event_id": "x", ', b""],
    "not_utf8": [b'{"event_id": "\xff\xfe"}', b"\x80\x81"],
    "schema_violation": [
        orjson.dumps({"event_id": "s1"}),
        valid_event(900, occurred_at="22/11/2026"),
        valid_event(901, identities={"qq": "1"}),
        valid_event(902, properties={"amount": -3}),
    ],
    "no_usable_identifier": [
        valid_event(903, identities={"phone": "00000000000", "openid": "null"}),
        valid_event(904, identities={"device_id": "undefined"}),
    ],
    "too_large": [valid_event(905, properties={"blob": "z" * 70_000})],
}


def test_every_message_is_accounted_for(env):
    valid = [valid_event(n) for n in range(120)]
    duplicates = valid[:5] + [valid_event(7, channel="web")]  # same event_id, resent or changed
    invalid = [raw for raws in INVALID.values() for raw in raws]
    lines = valid[:60] + invalid + duplicates + valid[60:]

    topo = env.topology
    with env.local_run() as run:
        run.stream_events(lines)
        run.finish_input(close_event_time=True, timeout=120)
        out = run.read_outputs()
        port = env.settings.web_port
        counted = {
            "in": metric(port, "stream_app_messages_in_total"),
            "duplicates": metric(port, "stream_app_events_duplicate_total"),
            "passed": metric(port, "stream_app_events_normalized_total"),
            **{r: metric(port, "stream_app_events_dlq_total", reason=r) for r in INVALID},
        }

    resolved = [orjson.loads(r.value) for r in out[topo.topics.resolved.name]]
    assert sorted(e["event_id"] for e in resolved) == [f"ev-{n:06d}" for n in range(120)]

    dlq = [orjson.loads(r.value) for r in out[topo.topics.dlq.name]]
    assert Counter(d["reason"] for d in dlq) == {k: len(v) for k, v in INVALID.items()}

    # Each DLQ record points at the exact original message.
    originals = {
        (r.partition, r.offset): r.value
        for r in iter_topics(run.bootstrap, [topo.topics.touchpoints.name])
        if not r.is_control
    }
    assert sorted(originals[(d["source"]["partition"], d["source"]["offset"])] or b"" for d in dlq) == sorted(
        invalid
    )

    # No raw phone number anywhere downstream.
    everything = b"".join(r.value or b"" for records in out.values() for r in records)
    assert b"1390000" not in everything
    assert all(e["identities"]["phone"].startswith("h:") for e in resolved)

    assert counted == {
        "in": len(lines),
        "duplicates": len(duplicates),
        "passed": 120,
        **{reason: len(raws) for reason, raws in INVALID.items()},
    }
