"""The replica's pure start decision and its RocksDB store (on a temporary directory, no broker)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import yaml

from stream_app.config import TopologyError
from stream_app.config.topology import parse_topology
from stream_app.worker.identity_replica import HotKeys, ReplicaStore
from stream_app.worker.replica_start import Resume, StartOver, Stored, where_to_start
from tests.unit.test_topology import _default

MiB = 2**20


@dataclass(frozen=True)
class Rec:
    key: bytes | None
    value: bytes | None
    offset: int


# -- where_to_start ---------------------------------------------------------------------------


def test_a_stored_offset_at_the_end_resumes_there():
    start = where_to_start(Stored("idm", 2, {0: 7, 1: 3}), "idm", 2, {0: 7, 1: 3})
    assert start == Resume({0: 7, 1: 3}) and not start.from_beginning


def test_one_partition_past_its_end_starts_all_over():
    start = where_to_start(Stored("idm", 3, {0: 5, 1: 9, 2: 1}), "idm", 3, {0: 50, 1: 8, 2: 1})
    assert isinstance(start, StartOver) and "partition 1" in start.reason


def test_another_topic_name_starts_over():
    start = where_to_start(Stored("old-idm", 2, {0: 5}), "idm", 2, {0: 50, 1: 0})
    assert isinstance(start, StartOver) and "old-idm" in start.reason


def test_a_stored_partition_without_its_end_is_a_caller_error():
    with pytest.raises(ValueError, match="partition 1"):
        where_to_start(Stored("idm", 2, {0: 5, 1: 2}), "idm", 2, {0: 5})


# -- the store ----------------------------------------------------------------------------------


def test_records_and_their_offsets_survive_a_reopen_together(tmp_path):
    path = tmp_path / "replica"
    store = ReplicaStore(path, 8 * MiB).open()
    store.set_source("idm", 2)
    applied = store.write(
        {
            0: [
                Rec(b"member_id:M1", b"p_1", 0),
                Rec(b"phone:h:aa", b"p_1", 1),
                Rec(b"member_id:M1", b"p_2", 2),
            ],
            1: [Rec(None, b"p_9", 4), Rec(b"device_id:d", b"p_3", 5)],
            2: [],
        }
    )
    store.close()

    again = ReplicaStore(path, 8 * MiB).open()
    try:
        assert applied == 4  # the keyless record maps nothing
        assert again.stored() == Stored("idm", 2, {0: 3, 1: 6})
        assert dict(again.items()) == {b"member_id:M1": b"p_2", b"phone:h:aa": b"p_1", b"device_id:d": b"p_3"}
    finally:
        again.close()


def test_a_tombstone_removes_the_identifier(tmp_path):
    store = ReplicaStore(tmp_path / "replica", 8 * MiB).open()
    try:
        store.write({0: [Rec(b"k", b"p_1", 0)]})
        store.write({0: [Rec(b"k", None, 1)]})
        assert store.get(b"k") is None and store.stored().next_offsets == {0: 2}
    finally:
        store.close()


def test_clear_leaves_an_open_empty_store(tmp_path):
    store = ReplicaStore(tmp_path / "replica", 8 * MiB).open()
    try:
        store.set_source("idm", 1)
        store.write({0: [Rec(b"k", b"p_1", 0)]})
        store.clear()
        assert store.stored() == Stored() and list(store.items()) == []
        store.write({0: [Rec(b"j", b"p_2", 0)]})
        assert store.get(b"j") == b"p_2"
    finally:
        store.close()


def test_memory_stays_within_the_configured_cache_while_the_map_grows_on_disk(tmp_path):
    """200,000 identifiers (~10 MB of keys and values) through an 8 MiB store: the write buffers
    are charged to the cache (RocksDB's own count of them), which stays within its capacity; the
    rest is on disk."""
    capacity = 8 * MiB
    store = ReplicaStore(tmp_path / "replica", capacity).open()
    try:
        highest = 0
        for start in range(0, 200_000, 2000):
            batch = [Rec(b"member_id:M%09d" % n, b"p_%016x" % n, n) for n in range(start, start + 2000)]
            store.write({0: batch})
            memtables = store.db.property_int_value("rocksdb.size-all-mem-tables")
            assert store.cache.get_usage() >= memtables, "write buffers not charged to the cache"
            highest = max(highest, store.cache.get_usage())
        for n in range(0, 200_000, 7):
            assert store.get(b"member_id:M%09d" % n) == b"p_%016x" % n
            highest = max(highest, store.cache.get_usage())
        store.db.flush()
        stats = store.stats()
    finally:
        store.close()
    assert highest <= capacity, f"cache use peaked at {highest} bytes, over its {capacity}"
    assert stats["disk_bytes"] > 0


# -- the identity map is compacted ----------------------------------------------------------------


def test_the_identity_map_is_compacted_unless_told_otherwise():
    data = _default()
    data["internal_topics"]["identity_map"].pop("config", None)
    topology = parse_topology(data)
    assert topology.internal_topics.identity_map.config == {"cleanup.policy": "compact"}
    assert topology.internal_topics.person_events.config == {}


def test_an_identity_map_with_retention_is_refused():
    data = yaml.safe_load(yaml.safe_dump(_default()))
    data["internal_topics"]["identity_map"]["config"] = {"cleanup.policy": "compact,delete"}
    with pytest.raises(
        TopologyError, match="internal_topics.identity_map: .*retention would drop old owners"
    ):
        parse_topology(data, "t.yaml")


# -- hot keys -------------------------------------------------------------------------------------


def test_hot_keys_never_hold_more_than_two_generations():
    hot = HotKeys(100)
    for n in range(10_000):
        hot.put(f"k{n}", "p")
        assert len(hot) <= 200
    assert hot.get("k9999") == "p" and hot.get("k0") is None


def test_hot_keys_off_keeps_nothing():
    hot = HotKeys(0)
    hot.put("k", "p")
    assert hot.get("k") is None and len(hot) == 0
