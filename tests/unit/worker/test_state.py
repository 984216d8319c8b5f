"""BatchState: each key read at most once and written at most once a batch, seen as a dict would.

One suite, run on dicts (`MemoryStore`) and on a real Faust table's RocksDB store
(`FaustTableStore`; no broker: the changelog records are caught where Faust hands them to its
producer). Oracles: a plain dict per partition, and Faust's own `table[key] = value`.
"""

from __future__ import annotations

import tempfile
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.worker.runtime import as_current
from stream_app.worker.state import ABSENT, BatchState, FaustTableStore, MemoryStore

PARTITIONS = 3


class Event:
    """What Faust tables read of the current event: its message's topic and partition."""

    def __init__(self, partition: int):
        self.message = SimpleNamespace(partition=partition, topic="person-events")


class FaustRig:
    """A Faust table on RocksDB under `datadir`, its changelog records caught (partition, key,
    value bytes) as Faust's topic would serialize them."""

    def __init__(self, datadir: Path):
        self.app = faust.App(f"t{uuid.uuid4().hex[:8]}", store="rocksdb://", datadir=str(datadir))
        self.sent: list[tuple[int, bytes, bytes | None]] = []

    def table(self, name: str, **options: Any) -> Any:
        table = self.app.Table(name, partitions=PARTITIONS, key_type=str, **options)
        topic = table.changelog_topic

        def send_soon(**kw: Any) -> Any:
            key, _ = topic.prepare_key(kw["key"], kw["key_serializer"])
            value = (
                None if kw["value"] is None else topic.prepare_value(kw["value"], kw["value_serializer"])[0]
            )
            self.sent.append((kw["partition"], key, value))
            return SimpleNamespace(message=SimpleNamespace(partition=kw["partition"]))

        topic.send_soon = send_soon
        # Faust checks the source topic's partitions against the changelog's on the consumer.
        table._verify_source_topic_partitions = lambda topic_name: None
        actives = {TP(table.changelog_topic_name, p) for p in range(PARTITIONS)}
        self.app.assignor.assigned_actives = lambda: actives
        return table

    def changelog(self, table: Any) -> list[tuple[int, str, Any]]:
        store = table.data
        return [
            (p, store._decode_key(k), ABSENT if v is None else store._decode_value(v))
            for p, k, v in self.sent
        ]


class Counting:
    """A `PartitionStore` that counts reads per (partition, key)."""

    def __init__(self, store: Any, changelog: Any):
        self.store = store
        self.changelog = changelog
        self.reads: Counter[tuple[int | None, str]] = Counter()

    def read(self, partition: int | None, key: str) -> Any:
        self.reads[(partition, key)] += 1
        return self.store.read(partition, key)

    def write(self, partition: int, changes: list[tuple[str, Any]]) -> None:
        self.store.write(partition, changes)

    def items(self) -> Any:
        return self.store.items()


def _store(kind: str, datadir: Path) -> Counting:
    if kind == "memory":
        memory = MemoryStore()
        return Counting(memory, lambda: memory.changelog)
    rig = FaustRig(datadir)
    table = rig.table("person-state")
    return Counting(FaustTableStore(table), lambda: rig.changelog(table))


OPS = st.lists(
    st.tuples(
        st.sampled_from(["get", "contains", "set", "del", "pop", "items", "flush"]),
        st.integers(0, PARTITIONS - 1),
        st.sampled_from(["p-a", "p-b", "p-c"]),
        st.integers(0, 3),
    ),
    max_size=60,
)


@pytest.mark.parametrize("kind", ["memory", "rocksdb"])
@settings(max_examples=40, deadline=None)
@given(ops=OPS)
def test_reads_and_writes_are_a_dict_per_partition_and_each_key_is_read_and_written_once_a_batch(kind, ops):
    with tempfile.TemporaryDirectory() as tmp:
        store = _store(kind, Path(tmp))
        current = [0]
        state = BatchState(store, partition_of=lambda: current[0])
        model: dict[int, dict[str, Any]] = {p: {} for p in range(PARTITIONS)}
        """What the table holds after each write, as Faust's own writes would leave it."""
        changed: set[tuple[int, str]] = set()
        for op, partition, key, value in [*ops, ("flush", 0, "", 0)]:
            current[0] = partition
            data = model[partition]
            if op == "get":
                assert state.get(key) == data.get(key)
            elif op == "contains":
                assert (key in state) == (key in data)
            elif op == "set":
                state[key] = {"v": value}
                data[key] = {"v": value}
                changed.add((partition, key))
            elif op == "del":
                if key in data:
                    del state[key], data[key]
                    changed.add((partition, key))
                else:
                    with pytest.raises(KeyError):
                        del state[key]
            elif op == "pop":
                if key in data:
                    changed.add((partition, key))
                assert state.pop(key, None) == data.pop(key, None)
            elif op == "items":
                everything = [(k, v) for d in model.values() for k, v in d.items()]
                assert sorted(state.items(), key=repr) == sorted(everything, key=repr)
            elif op == "flush":
                logged = len(store.changelog())
                state.flush()
                records = store.changelog()[logged:]
                where = Counter((p, k) for p, k, _ in records)
                assert set(where) <= changed and max(where.values(), default=1) == 1
                stored = {p: {} for p in range(PARTITIONS)}
                for p, k, v in store.items():
                    stored[p][k] = v
                assert stored == model
                changed.clear()
                store.reads.clear()
            assert max(store.reads.values(), default=1) == 1, "a key read twice in one batch"


def test_records_land_where_fausts_own_writes_put_them(tmp_path):
    """The same writes through `table[key] = value` (Faust, one record each) and through a
    BatchState flushed once: the same RocksDB contents per partition, and the same last
    changelog record per key, in the same changelog partition, byte for byte."""
    writes = [
        (0, "p-a", {"n": 1}),
        (1, "p-b", [1, 2]),
        (0, "p-a", {"n": 2}),
        (2, "p-c", "x"),
        (1, "p-b", None),
    ]
    writes += [(2, "p-d", {"n": 3}), (2, "p-c", {"n": 4}), (0, "p-e", 5), (0, "p-e", None)]
    faust_rig, ours_rig = FaustRig(tmp_path / "faust"), FaustRig(tmp_path / "ours")
    oracle, table = faust_rig.table("person-state"), ours_rig.table("person-state")
    state = BatchState(FaustTableStore(table))
    for partition, key, value in writes:
        with as_current(Event(partition)):
            if value is None:
                del oracle[key]
                del state[key]
            else:
                oracle[key] = value
                state[key] = value
    assert ours_rig.sent == [] and len(table.data._dbs) == 0, "written before the flush"
    state.flush()

    def last_record(sent: list[tuple[int, bytes, bytes | None]]) -> dict[bytes, tuple[int, bytes | None]]:
        return {key: (partition, value) for partition, key, value in sent}

    def contents(t: Any) -> dict[int, dict[bytes, bytes]]:
        return {p: dict(db.items()) for p, db in t.data._dbs.items()}

    assert last_record(ours_rig.sent) == last_record(faust_rig.sent)
    assert len(ours_rig.sent) == len({key for _, key, _ in writes}) < len(faust_rig.sent)
    assert contents(table) == contents(oracle)
    with as_current(Event(2)):
        assert table.get("p-c") == {"n": 4}, "Faust reads back what the batch wrote"


def test_string_values_are_logged_as_faust_logs_them(tmp_path):
    """`person-aliases` is declared with `value_type=str`: Faust's changelog and store codecs for it."""
    faust_rig, ours_rig = FaustRig(tmp_path / "faust"), FaustRig(tmp_path / "ours")
    oracle = faust_rig.table("person-aliases", value_type=str)
    table = ours_rig.table("person-aliases", value_type=str)
    state = BatchState(FaustTableStore(table))
    with as_current(Event(1)):
        oracle["p-merged"] = state["p-merged"] = "p-survivor"
    state.flush()
    assert ours_rig.sent == faust_rig.sent
    with as_current(Event(1)):
        assert BatchState(FaustTableStore(table)).get("p-merged") == oracle.get("p-merged") == "p-survivor"


def test_outside_of_a_record_reads_see_pending_writes_and_writes_are_refused():
    store, current = MemoryStore(), [1]
    state = BatchState(store, partition_of=lambda: current[0])
    state["p-a"] = {"n": 1}
    current[0] = None  # type: ignore[call-overload]
    assert state.get("p-a") == {"n": 1}
    with pytest.raises(TypeError):
        state["p-b"] = {"n": 2}


def test_a_key_created_and_deleted_in_one_batch_leaves_no_record():
    store = MemoryStore()
    state = BatchState(store, partition_of=lambda: 0)
    assert state.get("p-a") is None
    state["p-a"] = 1
    del state["p-a"]
    assert state.flush() == 0 and store.changelog == []


class _Outbox:
    """What `FaustTableStore` hands a stage's outbox, and the deliveries it registers with."""

    def __init__(self) -> None:
        from stream_app.worker.producer import Deliveries

        self.deliveries = Deliveries()
        self.added: list[tuple[str, bytes | None, bytes | None, int | None]] = []

    def add(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None) -> None:
        self.added.append((topic, key, value, partition))


def test_changelog_records_through_the_outbox_are_the_ones_faust_would_send(tmp_path):
    """The same batch flushed through Faust's `send_changelog` and through the stage's outbox:
    the same (partition, key, value) records in the table's changelog topic; and `persist`
    stores the acknowledged offset where Faust's recovery reads it."""
    writes = [(0, "p-a", {"n": 1}), (1, "p-b", "x"), (0, "p-a", {"n": 2}), (2, "p-c", [1]), (1, "p-b", None)]
    faust_rig, ours_rig = FaustRig(tmp_path / "faust"), FaustRig(tmp_path / "ours")
    outbox = _Outbox()
    tables = faust_rig.table("person-state"), ours_rig.table("person-state")
    states = BatchState(FaustTableStore(tables[0])), BatchState(FaustTableStore(tables[1], outbox=outbox))
    for state in states:
        for partition, key, value in writes:
            with as_current(Event(partition)):
                if value is None:
                    del state[key]
                else:
                    state[key] = value
        state.flush()
    topic = tables[1].changelog_topic.get_topic_name()
    assert outbox.deliveries.tracked == {topic}
    assert {(t, p) for t, _, _, p in outbox.added} == {(topic, 0), (topic, 1), (topic, 2)}
    assert [(p, k, v) for _, k, v, p in outbox.added] == faust_rig.sent and ours_rig.sent == []
    FaustTableStore(tables[1], outbox=outbox).persist({(topic, 2): 41, ("elsewhere", 0): 7})
    assert tables[1].data.persisted_offset(TP(topic, 2)) == 41
    assert tables[1].data.persisted_offset(TP(topic, 0)) is None
