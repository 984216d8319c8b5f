"""The published contracts: each schema is valid draft 2020-12, ships in the package, and the records
the pure cores build (ingest, identity, people) validate against their topic's schema.

The records come from the cores composed in-process as the worker composes them (first delivery
of each event_id, merge notices to the person stage, records handed on fed back, event time closed
at the end), over `contract_cases`: scripted people for every record shape plus a generated day.
"""

from __future__ import annotations

import copy
import fnmatch
import re
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from jsonschema import Draft202012Validator

from stream_app import contracts
from stream_app.audiences import AudienceEngine
from stream_app.config import load_topology
from stream_app.config.topology import IDENTIFIER_TYPES, duration_ms
from stream_app.contracts import OUTPUTS, SCHEMA_DIR, Contract, schema, validator
from stream_app.identity import IdentityResolver, IdentityRules, MappingIdentityStore
from stream_app.identity import records as identity_records
from stream_app.ingest import Accepted, Ingestor, PiiHasher
from stream_app.ingest.pipeline import REJECTION_REASONS
from stream_app.metrics import Metrics
from stream_app.people.processor import PersonProcessor
from stream_app.rules.engine import RuleEngine
from stream_app.tags.engine import TagEngine
from tests.unit.contract_cases import SCRIPTED, TWO_CONFLICTS_EVENT, contract_input

REPO = Path(__file__).resolve().parents[2]
TOPO = load_topology(REPO / "topology.yaml")
ALL = [contracts.TOUCHPOINT, *OUTPUTS.values()]
WALL_MS = 1_800_000_000_000


def core_outputs(lines: list[bytes]) -> dict[str, list[dict[str, Any]]]:
    """Output topic key (topology.yaml `topics:`) -> the records the cores decided, in order."""
    out: dict[str, list[dict[str, Any]]] = {key: [] for key in OUTPUTS}
    ingestor = Ingestor.from_topology(TOPO, PiiHasher(b"contract-key", TOPO.identifiers.default_phone_region))
    rules = IdentityRules(
        limits=dict(TOPO.identity.limits), shareable_types=frozenset(TOPO.identity.shareable_types)
    )
    resolver = IdentityResolver(MappingIdentityStore(), rules)
    person = PersonProcessor(
        TagEngine.from_specs(TOPO.tags),
        RuleEngine(TOPO.rules, TOPO.contact_policy, TOPO.stores),
        {},
        {},
        {},
        Metrics(),
        clock=lambda: WALL_MS / 1000,
        audiences=AudienceEngine.from_specs(TOPO.audiences, TOPO.tags),
    )
    lateness = duration_ms(TOPO.allowed_lateness)

    def to_person(record: dict[str, Any]) -> None:
        pending = [record]
        while pending:
            for output, _, value in person.handle(pending.pop(), 0):
                if value is not None:  # (a tombstone on audience-members has no schema)
                    (pending.append if output == "person_events" else out[output].append)(value)

    seen: set[str] = set()
    newest = 0
    for offset, line in enumerate(lines):
        outcome = ingestor.process(line, WALL_MS)
        if not isinstance(outcome, Accepted):
            source = {"topic": "touchpoints", "partition": 0, "offset": offset}
            out["dlq"].append(ingestor.dlq_record(line, outcome, source, WALL_MS))
            continue
        event = outcome.event
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        resolution = resolver.resolve(
            identity_records.event_keys(event), event["event_id"], event["event_time_ms"]
        )
        resolved = identity_records.resolved(event, resolution.one_id)
        out["resolved"].append(resolved)
        for merge in resolution.merges:
            record = identity_records.merge_record(merge, event)
            out["identity_merges"].append(record)
            to_person({"kind": "merge", **record})
        out["identity_conflicts"] += [
            identity_records.conflict_record(c, event) for c in resolution.conflicts
        ]
        to_person({"kind": "event", "event": resolved, "after": resolver.fragments(resolution.one_id)})
        newest = max(newest, event["event_time_ms"])
        if offset % 500 == 0:
            for output, _, value in person.advance(0, newest - lateness):
                if value is not None:
                    out[output].append(value)
    for output, _, value in person.close_event_time(0):
        if value is not None:
            out[output].append(value)
    return out


@pytest.fixture(scope="module")
def outputs() -> dict[str, list[dict[str, Any]]]:
    return core_outputs(contract_input())


def problems(contract: Contract, record: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(contract).iter_errors(record)
    ]


# -- the schemas themselves ----------------------------------------------------------------------


@pytest.mark.parametrize("contract", ALL, ids=lambda c: c.name)
def test_each_schema_is_valid_draft_2020_12_for_both_validators(contract):
    document = schema(contract)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(document)
    jsonschema_rs.Draft202012Validator(document)  # the compiled validator a consumer may use
    assert document["$id"].endswith("/" + contract.file)


def test_the_package_ships_exactly_the_declared_contracts():
    files = sorted(p.name for p in SCHEMA_DIR.iterdir() if p.name.endswith(".json"))
    assert files == sorted(c.file for c in ALL)
    # One copy: the top-level schemas/ of the repository is the package's folder.
    assert (REPO / "schemas").resolve() == (REPO / "stream_app" / "schemas").resolve()
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for name in files:
        assert any(fnmatch.fnmatch(f"schemas/{name}", g) for g in globs["stream_app"]), name


def test_contracts_are_found_without_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    contracts.schema.cache_clear()
    try:
        assert all(schema(c)["title"] for c in ALL)
    finally:
        contracts.schema.cache_clear()


@pytest.mark.parametrize("contract", OUTPUTS.values(), ids=lambda c: c.name)
def test_every_output_schema_requires_its_version_and_declares_its_dedupe_key(contract):
    document = schema(contract)
    assert document["properties"]["schema_version"] == {
        "description": document["properties"]["schema_version"]["description"],
        "const": contract.version,
    }
    assert "schema_version" in document["required"]
    assert document["additionalProperties"] is False
    key = document["x-deduplicate-on"]
    assert key and set(key) <= set(document["properties"])


def test_shared_definitions_are_the_same_in_every_schema():
    seen: dict[str, tuple[str, Any]] = {}
    for contract in OUTPUTS.values():
        for name, definition in schema(contract).get("$defs", {}).items():
            first = seen.setdefault(name, (contract.name, definition))
            assert definition == first[1], f"$defs/{name} differs: {contract.name} vs {first[0]}"
    assert seen["identifier_type"][1]["enum"] == list(IDENTIFIER_TYPES)
    assert schema(contracts.DLQ)["properties"]["reason"]["enum"] == list(REJECTION_REASONS)


# -- what the cores build ------------------------------------------------------------------------


def test_the_scripted_cases_alone_reach_every_output_topic():
    counts = {key: len(records) for key, records in core_outputs(SCRIPTED).items()}
    assert all(counts.values()), counts


@pytest.mark.parametrize("key", OUTPUTS, ids=str)
def test_every_record_the_cores_build_validates(outputs, key):
    records = outputs[key]
    assert records, f"no {key} records: the test would pass empty"
    bad = [(record, problems(OUTPUTS[key], record)) for record in records]
    bad = [b for b in bad if b[1]]
    assert not bad, f"{len(bad)} of {len(records)} invalid, first: {bad[0]}"


def test_each_record_shape_is_exercised(outputs):
    """The branches of the schemas (oneOf, if/then/else) each meet real records."""
    updates = outputs["profile_updates"]
    assert any("merged_one_id" in u for u in updates) and any(u["event_id"] for u in updates)
    reasons = Counter(r["reason"].split(":")[0] for r in outputs["actions_suppressed"])
    assert {"cap", "no_recipient", "rule_limit"} <= set(reasons), reasons
    assert {d["reason"] for d in outputs["dlq"]} >= {
        "invalid_json",
        "schema_violation",
        "no_usable_identifier",
    }
    assert any(a["store_id"] is None for a in outputs["guide_alerts"])
    on_audience = {a["trigger_event_id"] for a in outputs["guide_alerts"] if a["rule"] == "high_value_alert"}
    assert "hv-order" in on_audience  # caused by an event: the event
    assert any(t.startswith("c_") for t in on_audience)  # on a merge: the audience change's key


@pytest.mark.parametrize("key", OUTPUTS, ids=str)
def test_the_documented_dedupe_key_names_one_record(outputs, key):
    """Without replays, no two records share the key a consumer de-duplicates on."""
    fields = schema(OUTPUTS[key])["x-deduplicate-on"]
    keys = Counter(repr([record.get(f) for f in fields]) for record in outputs[key])
    assert max(keys.values()) == 1, keys.most_common(3)


def test_one_event_can_be_refused_twice_so_conflicts_dedupe_on_event_and_refused(outputs):
    twice = [c for c in outputs["identity_conflicts"] if c["event_id"] == TWO_CONFLICTS_EVENT]
    assert len(twice) == 2 and twice[0]["refused"] != twice[1]["refused"]


# -- the schemas refuse what breaks the contract -------------------------------------------------


@pytest.mark.parametrize(
    ("key", "change", "expected"),
    [
        ("coupons", lambda r: r.pop("schema_version"), "'schema_version' is a required property"),
        ("coupons", lambda r: r.update(schema_version=2), "1 was expected"),
        ("coupons", lambda r: r.update(extra=1), "Additional properties are not allowed"),
        ("coupons", lambda r: r.update(one_id="13800138000"), "does not match"),
        ("coupons", lambda r: r.update(emitted_at="2026-11-22 10:00"), "does not match"),
        ("guide_alerts", lambda r: r.pop("alert_key"), "'alert_key' is a required property"),
        ("actions_suppressed", lambda r: r.update(reason="cap:coupons_per_7d"), "'template' is a required"),
        ("actions_suppressed", lambda r: r.update(reason="tired"), "does not match"),
        ("resolved", lambda r: r["identities"].update(phone="+8613800138000"), "does not match"),
        ("resolved", lambda r: r["identities"].update(passport="X"), "is not one of"),
        ("identity_merges", lambda r: r["via"][0].update(type="email", value="a@b.c"), "does not match"),
        ("identity_conflicts", lambda r: r.update(refused=[]), "should be non-empty"),
        ("profile_updates", lambda r: r.update(merged_one_id=r["one_id"]), "is not valid under any"),
        ("dlq", lambda r: r["source"].pop("offset"), "'offset' is a required property"),
    ],
)
def test_a_record_that_breaks_the_contract_is_refused(outputs, key, change, expected):
    # A valid record to break: the topic's first after an event, and not already capped.
    record = copy.deepcopy(
        next(r for r in outputs[key] if r.get("event_id", "-") and not r.get("reason", "").startswith("cap"))
    )
    assert not problems(OUTPUTS[key], record)
    change(record)
    found = problems(OUTPUTS[key], record)
    assert any(re.search(re.escape(expected), p) for p in found), found


def test_docs_contracts_table_names_each_schema_and_its_dedupe_key():
    """docs/contracts.md says what the schemas say: file and de-duplication key of every topic."""
    rows = {}
    for line in (REPO / "docs" / "contracts.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].endswith(".json`"):
            rows[cells[1].strip("`")] = re.findall(r"`([a-z_]+)`", cells[3])
    assert set(rows) == {c.file for c in ALL}
    for contract in OUTPUTS.values():
        assert rows[contract.file] == schema(contract)["x-deduplicate-on"], contract.file
