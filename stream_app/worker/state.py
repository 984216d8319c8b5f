"""State read at most once and written at most once per batch, over a Faust table.

Faust's `table[key] = value` is a RocksDB put plus a changelog record through Faust's per-message
send path, and `table.get(key)` reads RocksDB twice on a hit and raises (and catches) a `KeyError`
on a miss. The person stage read and wrote a person's state, aliases and timers 3-5 times per
event. `BatchState` keeps what one batch read and wrote in a dict; `flush` writes each changed key
once: one RocksDB write batch per partition, one changelog record per key.

**Bound.** The dict holds only the keys one batch touched: a batch is at most `BATCH_MAX` records
or `ENVELOPES_MAX` envelopes (`stream_app.worker.runtime`). The stage runner flushes it whenever
the stage's outbox is sent: at the end of every batch, before each control record, after a
watermark or a marker made the stage write, and always before Faust may commit the batch's input
offsets (at-least-once; a crash before the commit reads the batch again). The person stage writes it
only once the batch's outputs are acknowledged (`stage_runner.send_batch`): while it waits, a lookup from
another task sees the batch's writes still pending here (`get` outside of a record).

**Partitions.** Faust keeps one RocksDB per partition and writes a key's changelog record to the
partition of the *current event* (`stream_app.worker.runtime.as_current`). Each entry here is kept
under the partition of the event it was read or written in, and flushed there, which is where
Faust's own `table[key] = value` would have put it.

Values are shared, not copied: what `get` returns is what the batch stored (as with a dict, the
way the pure cores' tests run). The cores never change a value in place.

    >>> state = BatchState(MemoryStore(), partition_of=lambda: 3)
    >>> state["p-1"] = {"n": 1}
    >>> state.get("p-1"), state.store.read(3, "p-1") is ABSENT
    ({'n': 1}, True)
    >>> state.flush(), state.store.read(3, "p-1")
    (1, {'n': 1})
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterator, MutableMapping
from typing import Any, Protocol

import orjson
import rocksdict
from faust.streams import current_event
from faust.types import TP


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()
"""A key the store does not hold (or that the batch deleted)."""
_NO_DEFAULT: Any = object()

Where = tuple[int, str]
"""(partition, key)"""


def current_partition() -> int | None:
    """The partition of Faust's current event; None outside of a record (a web lookup)."""
    event = current_event()
    return None if event is None else event.message.partition


class PartitionStore(Protocol):
    """Where `BatchState` reads from and flushes to: one table, partition by partition."""

    def read(self, partition: int | None, key: str) -> Any:
        """The value, or `ABSENT`; partition None: whichever partition holds the key."""

    def write(self, partition: int, changes: list[tuple[str, Any]]) -> None:
        """Store each (key, value) of `partition`, a value `ABSENT` deleting the key."""

    def items(self) -> Iterator[tuple[int, str, Any]]:
        """(partition, key, value) of every partition this worker holds."""


class MemoryStore:
    """A `PartitionStore` in dicts (tests); `changelog` lists what a table would have logged."""

    def __init__(self) -> None:
        self.partitions: dict[int, dict[str, Any]] = {}
        self.changelog: list[tuple[int, str, Any]] = []

    def read(self, partition: int | None, key: str) -> Any:
        if partition is None:
            return next((d[key] for d in self.partitions.values() if key in d), ABSENT)
        return self.partitions.get(partition, {}).get(key, ABSENT)

    def write(self, partition: int, changes: list[tuple[str, Any]]) -> None:
        data = self.partitions.setdefault(partition, {})
        for key, value in changes:
            if value is ABSENT:
                data.pop(key, None)
            else:
                data[key] = value
            self.changelog.append((partition, key, value))

    def items(self) -> Iterator[tuple[int, str, Any]]:
        for partition, data in list(self.partitions.items()):
            for key, value in list(data.items()):
                yield partition, key, value


class FaustTableStore:
    """A Faust table on its RocksDB store (`store='rocksdb://'`), reached as Faust reaches it.

    Reads are one RocksDB get in the partition's database; writes are one rocksdict `WriteBatch`
    per partition and one changelog record per key, in the format Faust's `Table.on_key_set`
    writes, so Faust's recovery reads it back as its own. With an `outbox`, the records go with
    the stage's other records through librdkafka (Faust's per-record `send_soon` path cost ~100 µs
    a record), and `persist` records the newest acknowledged offset per partition, as Faust does
    per record, once per batch (recovery after a restart starts there). Without one they go
    through Faust's `send_changelog`. Uses the store's private `_db_for_partition`, `_encode_key`,
    `_encode_value`, `_decode_key`, `_key_index` and `_dbs_for_actives` (faust-streaming 0.15), as
    `worker/table_scan.py` does.

    `decode`: the values' format. Faust's own decoder looks for a model in every value (most of a
    read's time); stream_app's tables hold plain JSON (Faust's json codec is orjson).
    """

    def __init__(self, table: Any, decode: Callable[[bytes], Any] = orjson.loads, outbox: Any = None):
        self.table = table
        self.decode = decode
        self.outbox = outbox
        self.topic: str = table.changelog_topic.get_topic_name()
        if outbox is not None:
            outbox.deliveries.tracked.add(self.topic)

    def read(self, partition: int | None, key: str) -> Any:
        store = self.table.data
        raw_key = store._encode_key(key)
        if partition is None:  # no current event: Faust's `_get` looks in every partition
            raw = store._get(raw_key)
            return ABSENT if raw is None else self.decode(raw)
        raw = store._db_for_partition(partition).get(raw_key)
        return ABSENT if raw is None else self.decode(raw)

    def write(self, partition: int, changes: list[tuple[str, Any]]) -> None:
        store = self.table.data
        batch = rocksdict.WriteBatch(raw_mode=True)
        records = []
        for key, value in changes:
            raw_key = store._encode_key(key)
            if value is ABSENT:
                batch.delete(raw_key)
                records.append((raw_key, None))
            else:
                raw_value = store._encode_value(value)
                batch.put(raw_key, raw_value)
                store._key_index[raw_key] = partition
                records.append((raw_key, raw_value))
        store._db_for_partition(partition).write(batch)
        if self.outbox is not None:
            for raw_key, raw_value in records:
                self.outbox.add(self.topic, raw_key, raw_value, partition)
            return
        for raw_key, raw_value in records:
            self.table.send_changelog(
                partition, raw_key, raw_value, key_serializer="raw", value_serializer="raw"
            )

    def persist(self, landed: dict[tuple[str, int], int]) -> None:
        """After the outbox's records were acknowledged: where each partition's changelog is
        stored up to (`Deliveries.take_landed`), as Faust keeps it, for recovery to start from."""
        store = self.table.data
        for (topic, partition), offset in landed.items():
            if topic == self.topic:
                store.set_persisted_offset(TP(topic, partition), offset)

    def items(self) -> Iterator[tuple[int, str, Any]]:
        store = self.table.data
        actives = {id(db) for db in store._dbs_for_actives()}
        for partition, db in list(store._dbs.items()):
            if id(db) not in actives:
                continue
            for raw_key, raw_value in db.items():
                if raw_key != store.offset_key:  # Faust keeps its offset among the keys
                    yield partition, store._decode_key(raw_key), self.decode(raw_value)


class BatchState(MutableMapping[str, Any]):
    """A mapping over a `PartitionStore` that reads each key at most once and writes it at most
    once per batch (see the module docstring for the bound and the partitions).

    `partition_of`: the partition of the record being handled (Faust's current event); writes
    outside of a record are refused, as Faust refuses them."""

    def __init__(self, store: PartitionStore, partition_of: Callable[[], int | None] = current_partition):
        self.store = store
        self.partition_of = partition_of
        self._seen: dict[Where, Any] = {}
        """What the batch read or wrote: a value or `ABSENT`."""
        self._dirty: dict[Where, None] = {}
        """Entries of `_seen` written (in order), to be flushed."""
        self._never_stored: set[Where] = set()
        """Read as absent from the store: deleting them again needs no changelog record."""

    def get(self, key: str, default: Any = None) -> Any:
        partition = self.partition_of()
        if partition is None:
            value = self._pending(key)
        else:
            where = (partition, key)
            value = self._seen.get(where, _NO_DEFAULT)
            if value is _NO_DEFAULT:
                value = self._seen[where] = self.store.read(partition, key)
                if value is ABSENT:
                    self._never_stored.add(where)
        return default if value is ABSENT else value

    def _pending(self, key: str) -> Any:
        """Outside of a record: a write still pending wins, or whatever the store holds."""
        for partition, pending in self._dirty:
            if pending == key:
                return self._seen[(partition, key)]
        return self.store.read(None, key)

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, ABSENT)
        if value is ABSENT:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, ABSENT) is not ABSENT

    def __setitem__(self, key: str, value: Any) -> None:
        self._put(key, value)

    def __delitem__(self, key: str) -> None:
        if self.get(key, ABSENT) is ABSENT:
            raise KeyError(key)
        self._put(key, ABSENT)

    def pop(self, key: str, default: Any = _NO_DEFAULT) -> Any:
        value = self.get(key, ABSENT)
        if value is ABSENT:
            if default is _NO_DEFAULT:
                raise KeyError(key)
            return default
        self._put(key, ABSENT)
        return value

    def _put(self, key: str, value: Any) -> None:
        partition = self.partition_of()
        if partition is None:
            raise TypeError("Cannot modify table key from outside of stream iteration")
        where = (partition, key)
        self._seen[where] = value
        self._dirty[where] = None

    def items(self) -> ItemsView[str, Any]:
        """Every key of every partition held here, pending writes included: one store scan,
        taken when called (a view that scanned again for its `len`, as `list()` asks, would
        scan twice)."""
        return _Items(self)

    def _items(self) -> Iterator[tuple[str, Any]]:
        for partition, key, value in self.store.items():
            if (partition, key) not in self._dirty:
                yield key, value
        for where in list(self._dirty):
            value = self._seen[where]
            if value is not ABSENT:
                yield where[1], value

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._items())

    def __len__(self) -> int:
        return sum(1 for _ in self._items())

    def flush(self) -> int:
        """Write each key changed since the last flush once, to its partition; forget the batch.

        Returns how many keys were written (deletes included)."""
        changes: dict[int, list[tuple[str, Any]]] = {}
        for where in self._dirty:
            value = self._seen[where]
            if value is ABSENT and where in self._never_stored:
                continue  # created and deleted within the batch: the store never had it
            changes.setdefault(where[0], []).append((where[1], value))
        for partition, batch in changes.items():
            self.store.write(partition, batch)
        self._seen.clear()
        self._dirty.clear()
        self._never_stored.clear()
        return sum(len(batch) for batch in changes.values())


class _Items(ItemsView[str, Any]):
    def __init__(self, state: BatchState):
        super().__init__(state)
        self._snapshot = list(state._items())

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(self._snapshot)

    def __len__(self) -> int:
        return len(self._snapshot)
