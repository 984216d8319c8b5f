"""An independent verifier: what the outputs must contain, recomputed from the input lines alone.

Its own code, not the app's: validation of the input contract (the few checks the schema and
`topology.yaml` ask for, written again here, not `Ingestor`), phone/email normalisation and the
keyed hash (needed only to name identifiers the way the output topics do), a plain union-find over
the identifiers of valid events, and per person the count and sum of `order_paid`. The one fact
it takes from the app is which links merge protection refused (`identity-conflicts`): the limits
depend on arrival order, and that topic is the contract that reports them.

Checks (each a `Check` with figures, so a run prints all of them before anything fails):
  lost                  every valid event_id on `touchpoints-resolved` at least once
  resolved_unexpected   nothing on `touchpoints-resolved` that was not a valid input event
  identity              the app's final people (one_ids followed through `identity-merges`) are
                        exactly the verifier's clusters
  tags_exactly_once     per person, `order_count` and `lifetime_spend` equal the valid order_paid
                        events (each once); and summed over every final profile
  action_keys_unique    no coupon_key twice on `coupons`, no alert_key twice on `guide-alerts`
  dlq_exactly_once      every invalid input position on the DLQ exactly once, nothing else there
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

IDENTIFIER_TYPES = (
    "member_id",
    "phone",
    "email",
    "unionid",
    "wecom_external_userid",
    "openid",
    "order_no",
    "device_id",
)
TOP_LEVEL = {
    "event_id",
    "event_type",
    "occurred_at",
    "channel",
    "identities",
    "store_id",
    "guide_id",
    "properties",
}
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# -- the input contract, written again -------------------------------------------------------------


@dataclass(frozen=True)
class InputRules:
    pii_key: bytes
    junk: frozenset[str]
    deny: Mapping[str, frozenset[str]]
    max_bytes: int = 65536

    @classmethod
    def from_topology(cls, topology: Any, pii_key: str) -> InputRules:
        ids = topology.identifiers
        junk = frozenset(v.strip().lower() for v in ids.junk_values)
        rules = cls(pii_key.encode(), junk, {}, topology.ingest.max_event_bytes)
        deny = {
            t: frozenset(filter(None, (rules.normalise(t, v) for v in vs))) for t, vs in ids.deny_list.items()
        }
        return cls(rules.pii_key, junk, deny, rules.max_bytes)

    def normalise(self, id_type: str, raw: str) -> str | None:
        """The canonical value, or None for junk. Phones: the mainland mobiles the generator writes."""
        value = raw.strip()
        if value.lower() in self.junk:
            return None
        if id_type == "phone":
            digits = re.sub(r"[\s().-]", "", value)
            if digits.startswith("+86"):
                digits = digits[3:]
            elif digits.startswith("0086"):
                digits = digits[4:]
            if not re.fullmatch(r"1[3-9]\d{9}", digits) or len(set(digits)) == 1:
                return None
            return "+86" + digits
        if id_type == "email":
            value = value.lower()
            return value if _EMAIL.match(value) else None
        return value

    def key(self, id_type: str, value: str) -> str:
        """The identifier key as outputs name it: phones and emails as `h:` + HMAC-SHA256 prefix."""
        if id_type in ("phone", "email"):
            digest = hmac.new(self.pii_key, f"{id_type}:{value}".encode(), hashlib.sha256).hexdigest()
            value = "h:" + digest[:32]
        return f"{id_type}:{value}"


@dataclass(frozen=True)
class ValidEvent:
    event_id: str
    event_type: str
    keys: tuple[str, ...]
    amount: float


def classify(raw: bytes | None, rules: InputRules) -> ValidEvent | str:
    """A valid event, or the reason it is not (a short word; the verifier does not compare reasons)."""
    if raw is None or len(raw) > rules.max_bytes:
        return "size_or_null"
    try:
        raw.decode("utf-8")
        doc = orjson.loads(raw)
    except (UnicodeDecodeError, orjson.JSONDecodeError):
        return "not_json"
    if not isinstance(doc, dict) or set(doc) - TOP_LEVEL:
        return "shape"
    for name, longest in (("event_id", 128), ("event_type", 64), ("channel", 64), ("occurred_at", 10**6)):
        if not isinstance(doc.get(name), str) or not 1 <= len(doc[name]) <= longest:
            return f"field:{name}"
    if not _RFC3339.match(doc["occurred_at"]):
        return "occurred_at"
    try:
        if datetime.fromisoformat(doc["occurred_at"].upper()).tzinfo is None:
            return "occurred_at"
    except ValueError:
        return "occurred_at"
    for name in ("store_id", "guide_id"):
        if name in doc and (not isinstance(doc[name], str) or not 1 <= len(doc[name]) <= 128):
            return f"field:{name}"
    ids = doc["identities"]
    if not isinstance(ids, dict) or not ids or set(ids) - set(IDENTIFIER_TYPES):
        return "identities"
    if not all(isinstance(v, str) and len(v) <= 256 for v in ids.values()):
        return "identities"
    props = doc.get("properties", {})
    if not isinstance(props, dict):
        return "properties"
    for name in ("sku", "category", "currency", "page"):
        if name in props and not isinstance(props[name], str):
            return "properties"
    amount = props.get("amount", 0)
    if "amount" in props and (isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0):
        return "amount"
    keys = []
    for id_type in IDENTIFIER_TYPES:
        if id_type in ids:
            value = rules.normalise(id_type, ids[id_type])
            if value is not None and value not in rules.deny.get(id_type, ()):
                keys.append(rules.key(id_type, value))
    if not keys:
        return "no_usable_identifier"
    amount = float(amount) if doc["event_type"] == "order_paid" else 0.0
    return ValidEvent(doc["event_id"], doc["event_type"], tuple(keys), amount)


# -- identity: a plain union-find ------------------------------------------------------------------


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


# -- the checks --------------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    figures: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def text(self) -> str:
        lines = [f"  {k}: {v}" for k, v in self.figures.items()]
        lines += [f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}" for c in self.checks]
        return "\n".join(lines)


@dataclass(frozen=True)
class InputRecord:
    partition: int
    offset: int
    value: bytes | None


def _money(x: float) -> int:
    return round(x * 100)


def _explain_split(
    split: Mapping[str, set[str]],
    resolved: list[dict[str, Any]],
    valid: Mapping[str, ValidEvent],
    outputs: Mapping[str, list[dict[str, Any]]],
    topics: Mapping[str, str],
    final: Callable[[str], str],
) -> list[str]:
    """For a failed identity check: per split person (first 3), each final one_id with the
    one_ids its events were published under, their event ids and identifiers, and the merges and
    refusals naming them, to find where the link was lost."""
    lines = []
    for cluster, finals in list(split.items())[:3]:
        for one_id in sorted(finals):
            events = [e for e in resolved if final(e["one_id"]) == one_id and e["event_id"] in valid]
            published = sorted({e["one_id"] for e in events})
            named = set(published)
            merges = [m for m in outputs[topics["merges"]] if {m["one_id"], m["merged_one_id"]} & named]
            ids = {e["event_id"] for e in events}
            refusals = [c for c in outputs[topics["conflicts"]] if c["event_id"] in ids]
            keys = sorted({k for e in events for k in valid[e["event_id"]].keys})
            lines.append(
                f"{cluster}: final {one_id} published as {published}, {len(events)} events "
                f"{sorted({e['event_id'] for e in events})[:6]}, keys {keys[:8]}, merges "
                f"{[(m['merged_one_id'], m['one_id']) for m in merges]}, refusals {len(refusals)}"
            )
    return lines


def verify(
    inputs: Iterable[InputRecord],
    outputs: Mapping[str, list[dict[str, Any]]],
    topics: Mapping[str, str],
    rules: InputRules,
    profile: Callable[[str], dict[str, Any]],
    trace: Callable[[], Mapping[str, set[str]]] | None = None,
) -> Report:
    """Recompute the expectations from `inputs` and check `outputs` (topic name -> decoded values).

    `topics` maps the roles resolved, merges, conflicts, dlq, coupons, alerts to topic names;
    `profile(one_id)` answers a final person's live profile (its `tags`). `trace()` (stage -> event
    ids seen on its input topic) only says how far lost events got, for the report: called only
    when events were lost (reading the internal topics, watermarks and all, takes minutes).
    """
    report = Report()
    fig = report.figures
    valid: dict[str, ValidEvent] = {}
    position: dict[str, tuple[int, int]] = {}
    invalid_positions: set[tuple[int, int]] = set()
    reasons: Counter[str] = Counter()
    repeated = 0
    for record in inputs:
        outcome = classify(record.value, rules)
        if isinstance(outcome, str):
            invalid_positions.add((record.partition, record.offset))
            reasons[outcome] += 1
        elif outcome.event_id in valid:
            repeated += 1  # processed once: the first one counts
        else:
            valid[outcome.event_id] = outcome
            position[outcome.event_id] = (record.partition, record.offset)
    fig["input_records"] = len(valid) + repeated + len(invalid_positions)
    fig["valid_events"] = len(valid)
    fig["repeated_event_ids"] = repeated
    fig["invalid_inputs"] = len(invalid_positions)
    fig["invalid_by_reason"] = dict(sorted(reasons.items()))

    resolved = outputs[topics["resolved"]]
    times = Counter(e["event_id"] for e in resolved)
    lost = sorted(set(valid) - set(times))
    fig["lost"] = len(lost)
    fig["resolved_duplicates"] = sum(n - 1 for n in times.values() if n > 1)
    where: dict[int, list[int]] = {}
    for event_id in lost:
        where.setdefault(position[event_id][0], []).append(position[event_id][1])
    fig["lost_by_input_partition"] = {
        p: f"{len(o)} in offsets {min(o)}-{max(o)}" for p, o in sorted(where.items())
    }
    if lost and trace:
        fig["lost_reached"] = {stage: len(set(lost) & seen) for stage, seen in trace().items()}
    report.check("lost", not lost, f"{len(lost)} valid events never on touchpoints-resolved {lost[:5]}")
    unexpected = sorted(set(times) - set(valid))
    report.check(
        "resolved_unexpected", not unexpected, f"{len(unexpected)} not valid inputs {unexpected[:5]}"
    )

    # Identity: union the identifiers each valid event carries, less those the linker refused.
    refused: dict[str, set[str]] = {}
    for c in outputs[topics["conflicts"]]:
        refused.setdefault(c["event_id"], set()).update(f"{r['type']}:{r['value']}" for r in c["refused"])
    uf = UnionFind()
    for event in valid.values():
        kept = [k for k in event.keys if k not in refused.get(event.event_id, ())]
        for key in kept:
            uf.find(key)
        for key in kept[1:]:
            uf.union(kept[0], key)

    def cluster_of(event: ValidEvent) -> str:
        kept = [k for k in event.keys if k not in refused.get(event.event_id, ())]
        return uf.find(kept[0] if kept else event.keys[0])

    expected: dict[str, list[float]] = {}  # cluster -> [order_count, spend]
    for event in valid.values():
        slot = expected.setdefault(cluster_of(event), [0, 0.0])
        if event.event_type == "order_paid":
            slot[0] += 1
            slot[1] += event.amount
    fig["people_expected"] = len(expected)
    fig["order_paid_expected"] = sum(int(v[0]) for v in expected.values())

    survivor = {m["merged_one_id"]: m["one_id"] for m in outputs[topics["merges"]]}
    fig["merges"] = len(survivor)
    fig["merges_chained"] = sum(1 for s in survivor.values() if s in survivor)
    fig["refused_links"] = len(outputs[topics["conflicts"]])

    def final(one_id: str) -> str:
        seen = 0
        while one_id in survivor and seen < 10_000:
            one_id, seen = survivor[one_id], seen + 1
        return one_id

    app_of: dict[str, set[str]] = {}  # cluster -> final one_ids its events were resolved to
    for e in resolved:
        event = valid.get(e["event_id"])
        if event is not None:
            app_of.setdefault(cluster_of(event), set()).add(final(e["one_id"]))
    clusters_of: dict[str, set[str]] = {}
    for cluster, one_ids in app_of.items():
        for one_id in one_ids:
            clusters_of.setdefault(one_id, set()).add(cluster)
    split = {c: ids for c, ids in app_of.items() if len(ids) > 1}
    joined = {o: cs for o, cs in clusters_of.items() if len(cs) > 1}
    fig["people_final"] = len(clusters_of)
    report.check(
        "identity",
        not split and not joined,
        f"{len(split)} people split over several final one_ids, {len(joined)} final one_ids holding "
        f"several people (first: {next(iter(joined.items()), None)})",
    )
    if split:
        fig["split_people"] = _explain_split(split, resolved, valid, outputs, topics, final)

    # Tags: every valid order_paid counted once, per person and over all final profiles.
    wrong: list[str] = []
    absorbed = Counter(final(merged) for merged in survivor)
    total_count, total_spend = 0, 0
    for one_id in sorted(clusters_of):
        tags = profile(one_id).get("tags", {})
        count, spend = int(tags.get("order_count") or 0), _money(float(tags.get("lifetime_spend") or 0))
        total_count, total_spend = total_count + count, total_spend + spend
        if len(clusters_of[one_id]) == 1:
            (cluster,) = clusters_of[one_id]
            if len(app_of[cluster]) == 1:
                want = expected[cluster]
                if (count, spend) != (int(want[0]), _money(want[1])):
                    wrong.append(
                        f"{one_id}: order_count {count} want {int(want[0])}, spend {spend / 100} "
                        f"want {want[1]:.2f} ({absorbed.get(one_id, 0)} one_ids merged into it)"
                    )
    want_count = fig["order_paid_expected"]
    want_spend = sum(_money(v[1]) for v in expected.values())
    fig["order_count_total"] = f"{total_count} (want {want_count})"
    fig["lifetime_spend_total"] = f"{total_spend / 100:.2f} (want {want_spend / 100:.2f})"
    fig["people_with_wrong_tags"] = len(wrong)
    report.check(
        "tags_exactly_once",
        not wrong and total_count == want_count and total_spend == want_spend,
        f"{len(wrong)} people wrong {wrong[:3]}; totals {total_count}/{want_count} orders, "
        f"{total_spend / 100:.2f}/{want_spend / 100:.2f} spend",
    )

    for role, key in (("coupons", "coupon_key"), ("alerts", "alert_key")):
        keys = Counter(a[key] for a in outputs[topics[role]])
        dups = {k: n for k, n in keys.items() if n > 1}
        fig[f"{role}"] = len(keys)
        fig[f"{role}_duplicate_keys"] = len(dups)
        report.check(
            f"{role}_keys_unique", not dups, f"{len(dups)} keys more than once {list(dups.items())[:3]}"
        )

    dlq = Counter((d["source"]["partition"], d["source"]["offset"]) for d in outputs[topics["dlq"]])
    dup = {p: n for p, n in dlq.items() if n > 1}
    missing = invalid_positions - set(dlq)
    extra = set(dlq) - invalid_positions
    fig["dlq_records"] = sum(dlq.values())
    fig["dlq_duplicates"] = sum(n - 1 for n in dup.values())
    fig["dlq_missing"] = len(missing)
    report.check(
        "dlq_exactly_once",
        not dup and not missing and not extra,
        f"{len(dup)} inputs on the DLQ more than once, {len(missing)} invalid inputs missing "
        f"{sorted(missing)[:3]}, {len(extra)} valid inputs on the DLQ {sorted(extra)[:3]}",
    )
    return report
