"""Each worker's replica of the identifier -> one_id map, for the identity fast path.

The linker (single writer) publishes every owner change to the `identity_map` topic (key: the
identifier key, so the topic is compacted to each identifier's latest owner). Every worker reads all
of its partitions (no consumer group: a replica, like a Kafka Streams GlobalKTable) and answers "are
all of this event's identifiers known, and one person?" locally. If so the event needs no linking and
is resolved where it is; otherwise it goes to the linker. A stale replica only sends more events to
the linker, or names a one_id that a later merge retired, which `identity-merges` maps on (as it does
for every consumer).

The replica is a RocksDB store (`ReplicaStore`) in the worker's state directory: identifier -> one_id,
and for each partition the next offset to read, written in one WriteBatch per fetch so the two never
disagree. After a restart it reads on from those offsets, not from the topic's beginning; when the
broker no longer holds what the store was built from, it empties the store and starts over
(`stream_app.worker.replica_start` decides). Its memory is bounded by configuration: one block cache
of `memory_bytes` holds data, index and filter blocks and is charged for the write buffers too,
and `HotKeys` keeps at most 2 x `hot_keys` recently looked-up identifiers decoded; the map itself
lives on disk (docs/architecture.md, State bounds).

Faust's own GlobalTable is not used: it has open bugs with several workers (faust-streaming #283).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import aiokafka
from aiokafka.errors import KafkaConnectionError, OffsetOutOfRangeError
from aiokafka.structs import TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge
from rocksdict import (
    BlockBasedIndexType,
    BlockBasedOptions,
    Cache,
    ColumnFamily,
    DBCompressionType,
    Options,
    Rdict,
    WriteBatch,
    WriteBufferManager,
)

from stream_app.config.settings import KafkaSecurity
from stream_app.io.security import aiokafka_config
from stream_app.worker.replica_start import Resume, StartOver, Stored, where_to_start

log = logging.getLogger(__name__)

REPLICA_DIR = "identity-replica"
"""Under the worker's state directory (`DATA_DIR/state`), so that whatever discards the local state
(the broker monitor on a broker that lost its data, an operator) discards the replica with it."""
MAX_RECORDS = 2000
"""Records per fetch, applied in one WriteBatch (~1 ms of RocksDB work on the event loop)."""
FETCH_MAX_BYTES = 4 * 2**20
PARTITION_FETCH_BYTES = 1 * 2**20
RETRY_S = 1.0
_META = "replica-meta"
_TOPIC, _PARTITIONS, _NEXT = b"topic", b"partitions", b"next:"


class _Record(Protocol):
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def offset(self) -> int: ...


def _options(cache: Cache, write_buffers: WriteBufferManager, memory_bytes: int) -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.create_missing_column_families(True)
    table = BlockBasedOptions()
    table.set_block_cache(cache)
    # Index and filter blocks in the cache too: outside it they grow with the number of keys.
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    table.set_bloom_filter(10, False)  # most look-ups are of identifiers nobody has seen yet
    # Partitioned: one index or filter block of a big SST file is larger than a shard of the
    # cache, never stays in it, and is read again on every look-up (~200 µs instead of ~3 µs).
    table.set_index_type(BlockBasedIndexType.two_level_index_search())
    table.set_partition_filters(True)
    table.set_pin_top_level_index_and_filter(True)
    options.set_block_based_table_factory(table)
    options.set_write_buffer_manager(write_buffers)
    options.set_write_buffer_size(max(memory_bytes // 8, 1 << 20))
    options.set_max_write_buffer_number(2)
    options.set_compression_type(DBCompressionType.lz4())
    options.set_max_open_files(512)
    options.set_keep_log_file_num(2)  # RocksDB's own LOG files, on disk
    return options


class ReplicaStore:
    """The replica's RocksDB: identifier key -> one_id (default column family) and what it was read
    from (`replica-meta`: topic, partitions, next offset per partition). Raw bytes throughout."""

    def __init__(self, path: Path, memory_bytes: int):
        self.path = path
        self.memory_bytes = memory_bytes
        self.cache = Cache(memory_bytes)
        # Memtables charged to the same cache: one number bounds RocksDB's memory here.
        self._write_buffers = WriteBufferManager.new_write_buffer_manager_with_cache(
            memory_bytes // 4, False, self.cache
        )
        self._db: Rdict | None = None
        self._meta: Rdict | None = None
        self._meta_cf: ColumnFamily | None = None

    @property
    def db(self) -> Rdict:
        if self._db is None:
            raise RuntimeError(f"the replica store {self.path} is not open")
        return self._db

    def open(self) -> ReplicaStore:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        options = _options(self.cache, self._write_buffers, self.memory_bytes)
        meta_options = _options(self.cache, self._write_buffers, self.memory_bytes)
        self._db = Rdict(str(self.path), options, column_families={_META: meta_options})
        self._meta_cf = self._db.get_column_family_handle(_META)
        self._meta = self._db.get_column_family(_META)
        return self

    @property
    def meta(self) -> tuple[Rdict, ColumnFamily]:
        if self._meta is None or self._meta_cf is None:
            raise RuntimeError(f"the replica store {self.path} is not open")
        return self._meta, self._meta_cf

    def close(self) -> None:
        # Every handle let go: any one of them keeps RocksDB (and its lock on the directory) open.
        db, self._db, self._meta, self._meta_cf = self._db, None, None, None
        if db is not None:
            db.close()

    def clear(self) -> None:
        """Everything gone, the store open again and empty."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self.open()

    def stored(self) -> Stored:
        meta, _ = self.meta
        topic = meta.get(_TOPIC)
        partitions = meta.get(_PARTITIONS)
        next_offsets: dict[int, int] = {}
        for key, value in meta.items(from_key=_NEXT):
            assert isinstance(key, bytes) and isinstance(value, bytes)  # raw mode
            if key.startswith(_NEXT):
                next_offsets[int(key[len(_NEXT) :])] = int(value)
        return Stored(
            topic.decode() if topic is not None else None,
            int(partitions) if partitions is not None else None,
            next_offsets,
        )

    def set_source(self, topic: str, partitions: int) -> None:
        _, meta_cf = self.meta
        batch = WriteBatch(raw_mode=True)
        batch.put(_TOPIC, topic.encode(), meta_cf)
        batch.put(_PARTITIONS, str(partitions).encode(), meta_cf)
        self.db.write(batch)

    def write(self, fetched: Mapping[int, Sequence[_Record]]) -> int:
        """Apply one fetch (partition -> its records, in order) with the partitions' next offsets,
        atomically; returns how many records it applied."""
        _, meta_cf = self.meta
        batch = WriteBatch(raw_mode=True)
        applied = 0
        for partition, records in fetched.items():
            if not records:
                continue
            for record in records:
                if record.key is None:  # the linker always keys by identifier; nothing to map
                    continue
                if record.value is None:  # a tombstone: compaction will drop the key too
                    batch.delete(record.key)
                else:
                    batch.put(record.key, record.value)
                applied += 1
            batch.put(_NEXT + str(partition).encode(), str(records[-1].offset + 1).encode(), meta_cf)
        if not batch.is_empty():
            self.db.write(batch)
        return applied

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.db.get(key)
        return value

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        yield from self.db.items()

    def stats(self) -> dict[str, int]:
        """Sizes for the metrics: estimated identifiers, memory in the cache, SST bytes on disk."""
        db = self.db
        return {
            "identifiers": int(db.property_int_value("rocksdb.estimate-num-keys") or 0),
            "memory_bytes": int(self.cache.get_usage()),
            "disk_bytes": int(db.property_int_value("rocksdb.total-sst-files-size") or 0),
        }


class ReplicaMetrics:
    def __init__(self, registry: CollectorRegistry):
        r = registry
        self.records_read = Counter(
            "stream_app_identity_replica_records_read_total",
            "Identity-map records this worker's replica applied since the process started",
            registry=r,
        )
        self.start_overs = Counter(
            "stream_app_identity_replica_start_overs_total",
            "Times the replica emptied its store and read the identity map from its beginning",
            registry=r,
        )
        self.offset = Gauge(
            "stream_app_identity_replica_offset",
            "How far the replica has read: the sum over the identity map's partitions of the next offset",
            registry=r,
        )
        self.identifiers = Gauge(
            "stream_app_identity_replica_identifiers",
            "Identifiers in the replica (RocksDB's estimate)",
            registry=r,
        )
        self.memory = Gauge(
            "stream_app_identity_replica_memory_bytes",
            "The replica's RocksDB block cache in use, write buffers included (bounded by configuration)",
            registry=r,
        )
        self.disk = Gauge(
            "stream_app_identity_replica_disk_bytes", "The replica's RocksDB SST files", registry=r
        )


class HotKeys:
    """The identifiers looked up lately, with their owners, in two generations of at most `size`
    each (0: none kept): a hit in the older moves up; when the younger is full it becomes the older
    and the oldest is dropped. LRU nearly, at a dict look-up's cost, and never more than 2 x `size`.

    >>> hot = HotKeys(2)
    >>> hot.put("a", "p_1"); hot.put("b", "p_2"); hot.put("c", "p_3")  # a, b: the older now
    >>> hot.get("a"), hot.get("c"), len(hot)
    ('p_1', 'p_3', 3)
    >>> hot.put("d", "p_4"); hot.get("b") is None  # b was in the generation dropped
    True
    >>> hot.forget("a"); hot.get("a") is None
    True
    """

    def __init__(self, size: int):
        self.size = size
        self._young: dict[str, str] = {}
        self._old: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        value = self._young.get(key)
        if value is None:
            value = self._old.get(key)
            if value is not None:
                self.put(key, value)
        return value

    def put(self, key: str, value: str) -> None:
        if not self.size:
            return
        if len(self._young) >= self.size:
            self._old, self._young = self._young, {}
        self._young[key] = value

    def forget(self, key: str) -> None:
        self._young.pop(key, None)
        self._old.pop(key, None)

    def clear(self) -> None:
        self._young, self._old = {}, {}

    def __len__(self) -> int:
        return len(self._young.keys() | self._old.keys())


class IdentityMapReplica:
    """`get` answers from the store once `run` (a Faust task) has decided where to start, None
    before; `records` counts what this process applied."""

    def __init__(
        self,
        bootstrap: list[str],
        topic: str,
        partitions: int,
        path: Path,
        memory_bytes: int,
        hot_keys: int = 0,
        registry: CollectorRegistry | None = None,
        security: KafkaSecurity | None = None,
    ):
        self.bootstrap = bootstrap
        self.security = security
        self.topic = topic
        self.partitions = partitions
        self.store = ReplicaStore(path, memory_bytes)
        self.metrics = ReplicaMetrics(registry or CollectorRegistry())
        self.records = 0
        self.hot = HotKeys(hot_keys)
        self._offsets: dict[int, int] = {}
        self._serving = False

    def get(self, key: str) -> str | None:
        if not self._serving:
            return None
        owner = self.hot.get(key)
        if owner is None:
            value = self.store.get(key.encode())
            if value is None:  # not kept: the next record may own it, and a miss is cheap (bloom)
                return None
            owner = value.decode()
            self.hot.put(key, owner)
        return owner

    @property
    def owners(self) -> Mapping[str, str]:
        """The map as a read-only mapping (iterating it scans the store)."""
        return _OwnersView(self)

    async def run(self) -> None:
        """Follow the topic from where the store left it until cancelled."""
        self.store.open()
        try:
            while True:
                try:
                    await self._follow(await self._start())
                except OffsetOutOfRangeError as exc:  # a real Kafka lost records under us
                    log.warning("identity replica: %s out of range while reading; deciding again", exc)
                except KafkaConnectionError as exc:  # the broker monitor reports outages
                    log.debug("identity replica: %s; retrying", exc)
                    await asyncio.sleep(RETRY_S)
                self._serving = False
        finally:
            self._serving = False
            self.store.close()

    async def _start(self) -> dict[int, int]:
        """Resume from the stored offsets, or empty the store and start over (logged once)."""
        stored = self.store.stored()
        ends, out_of_range = await self._fetch_ends(stored)
        start = where_to_start(stored, self.topic, self.partitions, ends, out_of_range)
        if isinstance(start, StartOver):
            log.warning(
                "identity replica: %s; emptying %s and reading %s from its beginning",
                start.reason,
                self.store.path,
                self.topic,
            )
            self.store.clear()
            self.hot.clear()
            self.metrics.start_overs.inc()
            start = Resume({p: 0 for p in range(self.partitions)})
        elif not start.from_beginning:
            log.info(
                "identity replica: resuming %s at %d records read (%d behind its end)",
                self.topic,
                sum(start.offsets.values()),
                sum(ends.get(p, 0) - offset for p, offset in start.offsets.items()),
            )
        self.store.set_source(self.topic, self.partitions)
        self._offsets = dict(start.offsets)
        self._update_gauges()
        self._serving = True
        return start.offsets

    async def _fetch_ends(self, stored: Stored) -> tuple[dict[int, int], set[int]]:
        """Each partition's end as a Fetch at the stored offset reports it (the high watermark, right
        on Tansu too), or the partitions the broker refuses as out of range."""
        consumer = self._consumer()
        await consumer.start()
        try:
            tps = self._assign(consumer, {p: stored.next_offsets.get(p, 0) for p in range(self.partitions)})
            ends: dict[int, int] = {}
            out_of_range: set[int] = set()
            while len(ends) < len(tps) and not out_of_range:
                try:
                    await consumer.getmany(timeout_ms=200, max_records=1)  # only the answer matters
                except OffsetOutOfRangeError as exc:
                    out_of_range |= {tp.partition for tp in exc.args[0]}
                for tp in tps:
                    highwater = consumer.highwater(tp)
                    if highwater is not None:
                        ends[tp.partition] = highwater
            return ends, out_of_range
        finally:
            await consumer.stop()

    async def _follow(self, offsets: dict[int, int]) -> None:
        consumer = self._consumer()
        await consumer.start()
        try:
            self._assign(consumer, offsets)
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=MAX_RECORDS)
                if not batches:
                    continue
                fetched = {tp.partition: records for tp, records in batches.items()}
                applied = self.store.write(fetched)
                for records in fetched.values():  # no await since the write: nobody read in between
                    for record in records:
                        if record.key is not None:
                            self.hot.forget(record.key.decode())
                for partition, records in fetched.items():
                    if records:
                        self._offsets[partition] = records[-1].offset + 1
                self.records += applied
                self.metrics.records_read.inc(applied)
                self._update_gauges()
        finally:
            await consumer.stop()

    def _consumer(self) -> aiokafka.AIOKafkaConsumer:
        return aiokafka.AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            # Never jump silently: an offset out of range is a decision for `where_to_start`.
            auto_offset_reset="none",
            fetch_max_bytes=FETCH_MAX_BYTES,
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
            **aiokafka_config(self.security),
        )

    def _assign(self, consumer: aiokafka.AIOKafkaConsumer, offsets: dict[int, int]) -> list[TopicPartition]:
        tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, offsets.get(tp.partition, 0))
        return tps

    def _update_gauges(self) -> None:
        stats = self.store.stats()
        self.metrics.offset.set(sum(self._offsets.values()))
        self.metrics.identifiers.set(stats["identifiers"])
        self.metrics.memory.set(stats["memory_bytes"])
        self.metrics.disk.set(stats["disk_bytes"])


class _OwnersView(Mapping[str, str]):
    def __init__(self, replica: IdentityMapReplica):
        self._replica = replica

    def __getitem__(self, key: str) -> str:
        owner = self._replica.get(key)
        if owner is None:
            raise KeyError(key)
        return owner

    def __iter__(self) -> Iterator[str]:
        for key, _ in self._scan():
            yield key

    def __len__(self) -> int:
        return sum(1 for _ in self._scan())

    def items(self) -> Iterator[tuple[str, str]]:  # type: ignore[override]
        return self._scan()

    def _scan(self) -> Iterator[tuple[str, str]]:
        if not self._replica._serving:
            return
        for key, owner in self._replica.store.items():
            yield key.decode(), owner.decode()
