"""Building inputs and reading outcomes for the integration tests."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterable

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from stream_app.io.kafka import iter_topics


def valid_event(n: int, **overrides: object) -> bytes:
    event = {
        "event_id": f"ev-{n:06d}",
        "event_type": ["page_view", "order_paid", "store_visit", "login"][n % 4],
        "occurred_at": f"2026-11-22T{8 + n % 12:02d}:{n % 60:02d}:00.000+08:00",
        "channel": ["app", "pos", "miniprogram", "web"][n % 4],
        "identities": {"phone": f"139{n:08d}", "member_id": f"M{n:07d}"},
        "properties": {"amount": n % 500, "note": f"call 139{n:08d}"},
    }
    event.update(overrides)
    return orjson.dumps(event)


def decoded(topics: dict[str, list]) -> dict[str, list[dict]]:
    """Each topic's record values as JSON, tombstones (a compacted topic's deletes) left out."""
    return {name: [orjson.loads(r.value) for r in rs if r.value is not None] for name, rs in topics.items()}


def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """True end offset of every non-empty partition, from reading to the fetch high watermark."""
    ends: dict[tuple[str, int], int] = {}
    for record in iter_topics(bootstrap, topics):
        ends[(record.topic, record.partition)] = record.offset + 1
    return ends


def wait_committed(bootstrap: str, group: str, topics: list[str], timeout: float = 30.0) -> None:
    """Until the worker's group has committed everything now in `topics` (so a kill loses nothing)."""
    ends = end_offsets(bootstrap, topics)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        deadline = time.monotonic() + timeout
        while True:
            committed = consumer.committed([TopicPartition(t, p) for t, p in ends], timeout=10)
            behind = {
                (tp.topic, tp.partition): (tp.offset, ends[(tp.topic, tp.partition)])
                for tp in committed
                if tp.offset < ends[(tp.topic, tp.partition)]
            }
            if not behind:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"offsets not committed after {timeout}s: {behind}")
            time.sleep(0.5)
    finally:
        consumer.close()


def final_one_id(merges: list[dict]) -> Callable[[str], str]:
    """one_id -> the one_id it lives on as now, following `identity-merges` as a consumer would."""
    survivor = {m["merged_one_id"]: m["one_id"] for m in merges}

    def final(one_id: str) -> str:
        while one_id in survivor:
            one_id = survivor[one_id]
        return one_id

    return final


def predicted_owners(resolved: list[dict], merges: list[dict], conflicts: list[dict]) -> dict[str, str]:
    """Identifier key -> final one_id, as a consumer of the output topics can work it out:
    an event's identifiers belong to its one_id unless refused; merges map old one_ids on."""
    final = final_one_id(merges)
    refused: dict[str, set[str]] = {}
    for c in conflicts:
        refused.setdefault(c["event_id"], set()).update(f"{r['type']}:{r['value']}" for r in c["refused"])
    owners: dict[str, str] = {}
    for event in resolved:
        for id_type, value in event["identities"].items():
            key = f"{id_type}:{value}"
            if key not in refused.get(event["event_id"], ()):
                owners.setdefault(key, event["one_id"])
    return {key: final(one_id) for key, one_id in owners.items()}


def metric(port: int, name: str, **labels: str) -> float:
    """A worker's metric from its /metrics page, summed over the samples matching `labels`."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def produce_paced(bootstrap: str, topic: str, lines: list[bytes], per_second: float) -> None:
    """Produce `lines` at a steady rate, as a live feed would (each delivered before the end)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    start = time.monotonic()
    for n, line in enumerate(lines):
        producer.produce(topic, value=line)
        producer.poll(0)
        pause = start + (n + 1) / per_second - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} events undelivered"
