"""Where the identifier-map replica starts reading after a restart: on from its stored offsets, or
over from the topic's beginning with an emptied store. Pure (no Kafka, no RocksDB): the adapter
(`stream_app.worker.identity_replica`) asks the broker, this decides.

The end of each partition comes from a Fetch at the stored offset: its high watermark is right on
every broker, the embedded Tansu included (whose ListOffsets(latest) is not, and which answers a
Fetch past the end with no records instead of OFFSET_OUT_OF_RANGE, as Kafka does). Either way a
stored offset past the end means the records the store was built from are gone.

A topic deleted and created again that has grown past the stored offsets cannot be told from here;
the broker monitor's identity check (`stream_app.worker.broker_monitor`) sees its new topic id and
discards the worker's local state, the replica's store with it (it lives in the state directory).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Stored:
    """What the replica's store says it was built from; `next_offsets`: partition -> next offset."""

    topic: str | None = None
    partitions: int | None = None
    next_offsets: Mapping[int, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.topic is None and not self.next_offsets


@dataclass(frozen=True)
class Resume:
    """Read each partition on from `offsets` (0: from its beginning)."""

    offsets: dict[int, int]

    @property
    def from_beginning(self) -> bool:
        """Nothing read yet: the same as starting over, with nothing to clear."""
        return not any(self.offsets.values())


@dataclass(frozen=True)
class StartOver:
    """Empty the store and read every partition from its beginning; `reason` is logged once."""

    reason: str


def where_to_start(
    stored: Stored,
    topic: str,
    partitions: int,
    ends: Mapping[int, int],
    out_of_range: Set[int] = frozenset(),
) -> Resume | StartOver:
    """Resume from the stored offsets unless the store was built from another topic, or the broker
    no longer holds what it read (a stored offset out of range or past the partition's end).

    `ends`: partition -> high watermark from a Fetch at the stored offset; `out_of_range`: the
    partitions whose Fetch the broker refused as out of range (a real Kafka does, Tansu does not).

    A store that read 10 and 4 records of a topic that now holds 12 and 4 goes on where it was:

    >>> where_to_start(Stored("idm", 2, {0: 10, 1: 4}), "idm", 2, {0: 12, 1: 4})
    Resume(offsets={0: 10, 1: 4})

    A fresh store, or a partition never read, starts at 0 (nothing to clear):

    >>> where_to_start(Stored(), "idm", 2, {0: 12, 1: 4})
    Resume(offsets={0: 0, 1: 0})

    The embedded broker restarted empty (or the topic was created again, smaller): the stored
    offset is past the end, and old owners would be answered for a topic that no longer has them:

    >>> where_to_start(Stored("idm", 2, {0: 10, 1: 4}), "idm", 2, {0: 3, 1: 0}).reason
    'partition 0 of idm ends at 3, before the stored offset 10: the topic was recreated or emptied'

    A real Kafka says so itself (also when retention deleted records the replica has not read):

    >>> where_to_start(Stored("idm", 2, {0: 10}), "idm", 2, {1: 0}, out_of_range={0}).reason
    'the stored offset 10 of partition 0 of idm is out of the range the broker holds'

    The topology names another topic, or the partitions changed (keys hash elsewhere now):

    >>> where_to_start(Stored("idm", 2, {0: 10}), "idm", 4, {0: 10, 1: 0, 2: 0, 3: 0}).reason
    'the store was built from idm with 2 partitions; the identity map is now idm with 4'
    """
    if not stored.empty and (stored.topic, stored.partitions) != (topic, partitions):
        return StartOver(
            f"the store was built from {stored.topic} with {stored.partitions} partitions; "
            f"the identity map is now {topic} with {partitions}"
        )
    if out_of_range:
        partition = min(out_of_range)
        offset = stored.next_offsets.get(partition, 0)
        return StartOver(
            f"the stored offset {offset} of partition {partition} of {topic} is out of the range "
            "the broker holds"
        )
    for partition, offset in sorted(stored.next_offsets.items()):
        end = ends.get(partition)
        if end is None:
            raise ValueError(f"no end offset for partition {partition}: fetch every stored partition first")
        if offset > end:
            return StartOver(
                f"partition {partition} of {topic} ends at {end}, before the stored offset {offset}: "
                "the topic was recreated or emptied"
            )
    return Resume({p: stored.next_offsets.get(p, 0) for p in range(partitions)})
