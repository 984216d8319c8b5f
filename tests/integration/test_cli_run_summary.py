"""`stream-app run` on a broker the test owns: the JSON summary's per-stage and per-rule numbers
against what the test counts itself, with its own consumer, on the output topics after the run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from stream_app.sample import generate
from tests.integration.conftest import REPO

pytestmark = pytest.mark.integration


def _read_all(bootstrap: str, topic: str, partitions: int) -> list[dict]:
    """Every record of `topic`, read to the end of each partition (control records left out)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "oracle",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    left, values = set(range(partitions)), []
    try:
        while left:
            msg = consumer.poll(10)
            assert msg is not None, f"{topic}: no end of partitions {sorted(left)} within 10 s"
            if msg.error() is not None:
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                left.discard(msg.partition())
            elif not any(key == "stream-app-control" for key, _ in msg.headers() or ()):
                values.append(orjson.loads(msg.value()))
    finally:
        consumer.close()
    return values


def test_summary_counts_every_stage_and_each_rule_as_the_topics_have_them(tmp_path, env, broker):
    day = generate(people=150, days=3, seed=11)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in day.lines))
    s, topo = env.settings, env.topology
    child_env = dict(
        os.environ,
        STREAM_APP_DATA_DIR=str(s.data_dir),
        STREAM_APP_APP_ID=s.app_id,
        STREAM_APP_WEB_PORT=str(s.web_port),
        STREAM_APP_PII_KEY="integration-test-key",
        STREAM_APP_FAST_REBALANCE="1",
    )
    result = subprocess.run(
        [sys.executable, "-m", "stream_app", "run", "--broker", s.broker or "", "--topology"]
        + [str(env.topology_path), "--events", str(events), "--once"],
        cwd=REPO,
        env=child_env,
        capture_output=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    summary = orjson.loads(result.stdout)  # stdout is a pipe: JSON

    # Every line of the file is past every stage once the run is over; the log line says so too.
    lines = len(day.lines)
    assert summary["processed"] == {"ingest": lines, "dedupe": lines, "link": lines, "people": lines}
    assert f"people {lines:,}/{lines:,}" in result.stderr.decode()

    bootstrap = broker.bootstrap
    t = topo.topics
    emitted = Counter(
        record["rule"]
        for spec in (t.coupons, t.guide_alerts)
        for record in _read_all(bootstrap, spec.name, spec.partitions)
    )
    suppressed = _read_all(bootstrap, t.actions_suppressed.name, t.actions_suppressed.partitions)
    by_reason: dict[str, Counter[str]] = {rule: Counter() for rule in topo.rules}
    for record in suppressed:
        by_reason[record["rule"]][record["reason"]] += 1
    assert sum(emitted.values()) > 0 and suppressed, "the generated days should trigger rules"
    assert len([rule for rule in topo.rules if emitted[rule]]) >= 2

    expected = {
        rule: {
            "action": "coupon" if spec.coupon is not None else "guide_alert",
            "emitted": emitted[rule],
            "suppressed": sum(by_reason[rule].values()),
            "suppressed_by_reason": dict(sorted(by_reason[rule].items())),
        }
        for rule, spec in topo.rules.items()
    }
    assert summary["actions"] == expected
    # The per-rule numbers add up to the topics' record counts in the same summary.
    out = summary["records_out"]
    assert sum(r["emitted"] for r in expected.values()) == out[t.coupons.name] + out[t.guide_alerts.name]
    assert sum(r["suppressed"] for r in expected.values()) == out[t.actions_suppressed.name]
