"""The worker's Faust tables, each with a share of one configured RocksDB memory budget.

Faust opens one RocksDB per table partition with its defaults: a 64 MiB write buffer (up to 3 of
them) and a 2 GiB block cache *each*. With ~44 databases a worker's memory then grew with every
person it met (`make bench` measured ~23 kB of RSS per new person) long after the state itself
was on disk at ~2 kB a person. Here every database gets an equal share of
`STREAM_APP_TABLE_MEMORY_BYTES`: two write buffers and a block cache, so what the tables hold in
memory is bounded by that setting, whatever the number of people.

    >>> shares = TableMemory(budget_bytes=96 * 2**20, databases=32).options()
    >>> shares["write_buffer_size"] == shares["block_cache_size"] == 2**20, shares["max_write_buffer_number"]
    (True, 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

WRITE_BUFFERS = 2
"""Per database: one being filled, one being flushed (Faust's default keeps up to 3)."""
MIN_SHARE_BYTES = 256 * 1024
"""No database gets less per buffer or cache than this (a tiny budget over many partitions)."""


@dataclass(frozen=True)
class TableMemory:
    budget_bytes: int
    databases: int
    """Every partition of every table this worker may hold (the bound assumes it holds all)."""

    def options(self) -> dict[str, Any]:
        """Faust's `RocksDBOptions` for one database: its share of the budget."""
        share = max(MIN_SHARE_BYTES, self.budget_bytes // (self.databases * (WRITE_BUFFERS + 1)))
        return {
            "write_buffer_size": share,
            "max_write_buffer_number": WRITE_BUFFERS,
            "block_cache_size": share,
            "block_cache_compressed_size": MIN_SHARE_BYTES,  # (unused with rocksdict)
        }


class Tables:
    """Declares the worker's tables (`app.Table`), each with its share of the memory budget."""

    def __init__(self, app: faust.App, memory: TableMemory):
        self.app = app
        self.memory = memory

    def __call__(self, name: str, partitions: int, **kwargs: Any) -> Any:
        return self.app.Table(name, partitions=partitions, options=self.memory.options(), **kwargs)
