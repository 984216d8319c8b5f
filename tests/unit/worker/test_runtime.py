"""The outbox: what a stage decided goes out in order, internal hops in envelopes (no broker)."""

from __future__ import annotations

from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from stream_app.control import CONTROL_HEADER
from stream_app.worker.runtime import Outbox, envelope_items, partition_for


class Producer:
    """Records what was handed to it, as `StageProducer.produce` takes it (acknowledged at once)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, int | None, Any]] = []

    def produce(self, deliveries, topic, key, value, partition=None, headers=None) -> None:
        deliveries.produced += 1
        self.sent.append((topic, key, value, partition, headers))
        deliveries.on_delivery(None, None)


def _outbox(producer: Producer) -> Outbox:
    return Outbox(producer, {"inner": 4, "out": 2}, frozenset({"inner"}))  # type: ignore[arg-type]


@given(st.binary(min_size=1, max_size=40), st.integers(1, 64))
def test_items_go_where_a_keyed_record_would(key, partitions):
    # aiokafka's own partitioner: what Faust's router asks to find a key's worker.
    assert partition_for(key, partitions) == DefaultPartitioner()(key, list(range(partitions)), [])


def test_items_for_one_partition_share_one_record_in_order_and_outputs_stay_one_per_event():
    producer = Producer()
    outbox = _outbox(producer)
    keys = [f"k{n}".encode() for n in range(40)]
    for n, key in enumerate(keys):
        outbox.add("inner", key, b'{"n":%d}' % n)
        outbox.add("out", key, b"%d" % n)
    outbox.send()
    envelopes = [(p, envelope_items(v)) for topic, _, v, p, _ in producer.sent if topic == "inner"]
    outputs = [v for topic, _, v, _, _ in producer.sent if topic == "out"]
    assert outputs == [b"%d" % n for n in range(40)]
    # Recomputed by hand: each partition's items, in the order they were added.
    expected: dict[int, list[bytes]] = {}
    for n, key in enumerate(keys):
        expected.setdefault(DefaultPartitioner()(key, [0, 1, 2, 3], []), []).append(b'{"n":%d}' % n)
    assert dict(envelopes) == expected and len(envelopes) == len(expected)


def test_a_control_record_goes_to_every_partition_behind_what_was_added_before_it():
    producer = Producer()
    outbox = _outbox(producer)
    outbox.add("inner", None, b'{"a":1}', partition=2)
    outbox.send_control("inner", b"mark")
    assert [(p, v, h) for _, _, v, p, h in producer.sent] == [
        (2, b'{"a":1}', None),
        *[(p, b"mark", {CONTROL_HEADER: b"1"}) for p in range(4)],
    ]
    assert len(outbox) == 0


def test_an_outbox_sent_empties_and_starts_new_envelopes():
    producer = Producer()
    outbox = _outbox(producer)
    outbox.add("inner", None, b"1", partition=0)
    outbox.send()
    outbox.add("inner", None, b"2", partition=0)
    outbox.send()
    assert [v for _, _, v, _, _ in producer.sent] == [b"1", b"2"]


def test_a_full_envelope_is_closed_and_the_items_go_on_in_the_next():
    producer = Producer()
    outbox = Outbox(producer, {"inner": 1}, frozenset({"inner"}), max_bytes=20)
    items = [b"%09d" % n for n in range(7)]  # 9 bytes each, 10 with the separator: two a record
    for item in items:
        outbox.add("inner", None, item, partition=0)
    outbox.send()
    envelopes = [envelope_items(v) for _, _, v, _, _ in producer.sent]
    assert [len(e) for e in envelopes] == [2, 2, 2, 1]
    assert [item for e in envelopes for item in e] == items
    assert all(len(v) <= 20 for _, _, v, _, _ in producer.sent)
