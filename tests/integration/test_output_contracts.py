"""Every record of a real bounded run, on every output topic, validates against its published schema.

One run of the topology on the embedded broker over `contract_cases` (scripted people for every
record shape and a generated population with its junk), read back raw: nothing on an output topic
may be anything but a record of its contract, with the message key the contract names.
"""

from __future__ import annotations

import re
from collections import Counter

import orjson
import pytest

from stream_app.contracts import OUTPUTS, validator
from stream_app.io.kafka import iter_topics
from tests.unit.contract_cases import contract_input

pytestmark = pytest.mark.integration

KEYED_BY_ONE_ID = {
    "resolved",
    "identity_merges",
    "identity_conflicts",
    "profile_updates",
    "coupons",
    "guide_alerts",
    "actions_suppressed",
    "audience_changes",
}


def test_every_output_record_of_a_run_validates_against_its_schema(env):
    topics = {getattr(env.topology.topics, key).name: key for key in OUTPUTS}
    with env.local_run() as run:
        run.stream_events(contract_input())
        run.finish_input(close_event_time=True, timeout=240)
        # Raw, control records included: a consumer sees whatever is there.
        records = list(iter_topics(run.bootstrap, list(topics)))

    counts = Counter(topics[r.topic] for r in records)
    assert set(counts) == set(OUTPUTS), f"output topics without records: {set(OUTPUTS) - set(counts)}"
    bad: list[tuple[str, int, int, str]] = []
    for record in records:
        key = topics[record.topic]
        where = (key, record.partition, record.offset)
        if record.is_control:
            bad.append((*where, "a control record on an output topic"))
            continue
        if key == "audience_members" and record.value is None:  # a tombstone: an exit
            if not re.fullmatch(rb"[a-z][a-z0-9_]*(\[.*\])?:p_[0-9a-f]{16}", record.key or b""):
                bad.append((*where, f"tombstone key {record.key!r} is not <audience>:<one_id>"))
            continue
        value = orjson.loads(record.value or b"null")
        if key == "audience_members":
            sub = f"[{value.get('sub_key')}]" if value.get("sub_key") is not None else ""
            expected = f"{value.get('audience')}{sub}:{value.get('one_id')}"
            if record.key != expected.encode():
                bad.append((*where, f"key {record.key!r} is not {expected}"))
        bad += [
            (*where, f"{'/'.join(map(str, e.absolute_path))}: {e.message}")
            for e in validator(OUTPUTS[key]).iter_errors(value)
        ]
        if key in KEYED_BY_ONE_ID and record.key != value.get("one_id", "").encode():
            bad.append((*where, f"key {record.key!r} is not the record's one_id"))
        if key == "dlq":
            source = value.get("source") or {}
            expected = f"{source.get('topic')}:{source.get('partition')}:{source.get('offset')}"
            if record.key != expected.encode():
                bad.append((*where, f"key {record.key!r} is not the source position {expected}"))
    assert not bad, (
        f"{len(bad)} of {len(records)} records break their contract ({dict(counts)}), first: {bad[:3]}"
    )
