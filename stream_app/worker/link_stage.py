"""The linker's Faust adapter: one partition, the identity graph in changelogged tables.

`IdentityResolver` decides (links, merges, conflicts, new people); this sends what it decided and
commits identity state in the order a crash cannot break: merges on the broker first, then state,
then the new owners (and each survivor's merged one_ids) for every worker's replica of the
identifier map.
"""

from __future__ import annotations

from typing import Any

import orjson

from stream_app.identity import IdentityResolver
from stream_app.identity import records as identity_records
from stream_app.identity.store import BufferedIdentityStore
from stream_app.metrics import Metrics
from stream_app.worker.runtime import Outbox, TopicNames, envelope_items


def publish_resolved(
    outbox: Outbox, names: TopicNames, event: dict[str, Any], one_id: str, after: list[str] | None = None
) -> None:
    """An event resolved to `one_id`: the contract's record, and the person stage's input.

    `after`: the one_ids merged into the person so far; the person stage holds the event until it
    has taken in each one's state (a replay whose first pass went to a fragment is then seen there)."""
    resolved = orjson.dumps(identity_records.resolved(event, one_id))
    key = one_id.encode()
    outbox.add(names.resolved, key, resolved)
    wait = b',"after":' + orjson.dumps(after) if after else b""
    outbox.add(names.person_events, key, b'{"kind":"event","event":' + resolved + wait + b"}")


class LinkStage:
    def __init__(
        self,
        resolver: IdentityResolver,
        pending: BufferedIdentityStore,
        outbox: Outbox,
        names: TopicNames,
        metrics: Metrics,
    ):
        self.resolver = resolver
        self.pending = pending
        """The resolver's store: its writes held until `commit()`."""
        self.outbox = outbox
        self.names = names
        self.metrics = metrics

    async def handle(self, record: Any) -> None:
        """One envelope: resolve its events in order, then send merges, await their acks, commit
        the identity state, publish the owners (a replay after the commit would not merge again,
        so the merge records must be on the broker first)."""
        outbox, names = self.outbox, self.names
        merged = created = 0
        survivors: set[str] = set()
        for value in envelope_items(record.value):
            event = orjson.loads(value)
            with self.metrics.identity_seconds.time():
                resolution = self.resolver.resolve(
                    identity_records.event_keys(event), event["event_id"], event["event_time_ms"]
                )
            one_id = resolution.one_id.encode()
            # Any event here may be a replay (of this stage's input, or one the de-duplicator
            # passed again): it waits at the person for every fragment merged in so far.
            after = self.resolver.fragments(resolution.one_id)
            publish_resolved(outbox, names, event, resolution.one_id, after)
            for merge in resolution.merges:
                merge_record = identity_records.merge_record(merge, event)
                outbox.add(names.merges, one_id, orjson.dumps(merge_record))
                notice = orjson.dumps({"kind": "merge", **merge_record})
                # To the merged person's partition: the per-person stages move its state from there.
                outbox.add(names.person_events, merge.merged_one_id.encode(), notice)
                self.metrics.identity_merges.inc()
            for conflict in resolution.conflicts:
                conflict_record = identity_records.conflict_record(conflict, event)
                outbox.add(names.conflicts, one_id, orjson.dumps(conflict_record))
                self.metrics.identity_conflicts.labels(conflict.reason.split(":")[0]).inc()
            merged += len(resolution.merges)
            if resolution.merges:
                survivors.add(resolution.one_id)
            created += resolution.created
        outbox.send()
        if merged:
            await outbox.delivered()
        for key, owner in self.pending.commit().items():
            outbox.add(names.identity_map, key.encode(), owner.encode())
        for survivor in survivors:  # (the fast path names them as the linker does)
            fragments = orjson.dumps(self.resolver.fragments(survivor))
            outbox.add(names.identity_map, identity_records.fragments_key(survivor).encode(), fragments)
        self.metrics.identity_profiles_created.inc(created)
