"""Walking one partition of a Faust RocksDB table in key order, a slice at a time.

Faust tables offer no ranged reads; its RocksDB store keeps one database per partition, so a slice
of one partition's keys is read there directly (with the store's own key and value codecs). Used by
sweeps that must touch only the partition whose record is being processed: Faust writes a table
deletion to the changelog partition of the current record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def scan_partition(
    table: Any, partition: int, after: Any, limit: int, decode_value: Callable[[bytes], Any] | None = None
) -> list[tuple[Any, Any]]:
    """Up to `limit` (key, value) pairs of `table`'s `partition`, in key order, after key `after`.

    `decode_value` replaces the store's own value codec where the caller knows the format (Faust's
    registry looks for a model in every value: most of a sweep's time went there)."""
    store = table.data
    decode = decode_value or store._decode_value
    db = store._db_for_partition(partition)
    start = None if after is None else store._encode_key(after)
    found: list[tuple[Any, Any]] = []
    for raw_key, raw_value in db.items(from_key=start):
        if raw_key == store.offset_key or raw_key == start:  # Faust keeps its offset among the keys
            continue
        found.append((store._decode_key(raw_key), decode(raw_value)))
        if len(found) == limit:
            break
    return found
