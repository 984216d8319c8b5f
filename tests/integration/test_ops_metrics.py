"""A real run's /metrics against what operators read: every metric the dashboard and the alert
rules query is exported, and the counts are the ones the input makes known.

The input is the scripted week of test_rules_pipeline (its outcomes are worked out there from the
rules, independently of the code), one malformed line, and two events whose member ids merge
protection keeps apart.
"""

from __future__ import annotations

import time
import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy_files import queried_metric_names
from tests.integration.test_rules_pipeline import DAY0, PHASES, ev

pytestmark = pytest.mark.integration

REFUSED = [  # one phone, two member ids: the second link is refused ("limit:member_id")
    ev("ops-a", "login", DAY0, identities={"member_id": "MOPSA", "phone": "13955556666"}),
    ev("ops-b", "login", DAY0, identities={"member_id": "MOPSB", "phone": "13955556666"}),
]
MALFORMED = b"not json"

EMITTED = Counter(  # (rule, action) -> count: the coupons and alerts test_rules_pipeline expects
    {("welcome", "coupon"): 4, ("cart_abandon", "coupon"): 3, ("winback", "coupon"): 1}
    | {("browse_interest", "guide_alert"): 1, ("vip_store_visit", "guide_alert"): 1}
)
SUPPRESSED = Counter(
    {
        ("cart_abandon", "cap:coupons_per_7d"): 1,
        ("welcome", "rule_limit"): 2,
        ("cart_abandon", "cap:sms_per_60d"): 1,
        ("high_value_alert", "no_recipient"): 1,
    }
)
PEOPLE = 13
"""MW, MC1-3, MK, MV, MG, the phone that merges into MG, MB, MWB, MS; MOPSA and MOPSB."""


def _scrape(port: int) -> dict[str, list]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append(s)
    return samples


def _total(samples: dict[str, list], name: str, **labels: str) -> float:
    return sum(s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))


def _by(samples: dict[str, list], name: str, *keys: str) -> Counter:
    return Counter({tuple(s.labels[k] for k in keys): s.value for s in samples.get(name, []) if s.value})


def _until_committed(port: int, topic: str, partitions: int, timeout: float = 60) -> dict[str, list]:
    """Scrape until every input partition reports lag 0 (Faust commits every few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = _scrape(port)
        lag = {
            s.labels["partition"]: s.value
            for s in samples.get("stream_app_consumer_lag", [])
            if s.labels["topic"] == topic
        }
        if len(lag) == partitions and not any(lag.values()):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"input lag after {timeout}s: {lag}")
        time.sleep(0.5)


def test_every_queried_metric_is_exported_with_the_counts_the_input_makes_known(env):
    topo = env.topology
    lines = 0
    with env.local_run() as run:
        for n, phase in enumerate(PHASES):
            extra = (REFUSED + [MALFORMED]) if n == 0 else []
            lines += run.stream_events(phase + extra)
            run.finish_input(close_event_time=n == len(PHASES) - 1, timeout=120)
        touchpoints = topo.topics.touchpoints
        samples = _until_committed(run.web_port, touchpoints.name, touchpoints.partitions)

    exported = set(samples)
    missing = {name: sorted(where) for name, where in queried_metric_names().items() if name not in exported}
    assert not missing, f"queried but not exported by a real run: {missing}"

    events = sum(len(phase) for phase in PHASES) + len(REFUSED)
    assert lines == events + 1
    assert _total(samples, "stream_app_messages_in_total") == events + 1
    assert _by(samples, "stream_app_events_dlq_total", "reason") == Counter({("invalid_json",): 1})
    assert _total(samples, "stream_app_events_valid_total") == events
    assert _total(samples, "stream_app_identity_merges_total") == 1
    assert _by(samples, "stream_app_identity_refused_links_total", "reason") == Counter({("limit",): 1})
    assert _total(samples, "stream_app_identity_new_people_total") == PEOPLE
    assert _by(samples, "stream_app_actions_emitted_total", "rule", "action") == EMITTED
    assert _by(samples, "stream_app_actions_suppressed_total", "rule", "reason") == SUPPRESSED
    # Every emitted action's latency observed once, under its rule.
    latency = _by(samples, "stream_app_action_latency_seconds_count", "rule")
    assert latency == Counter({(rule,): n for (rule, _), n in EMITTED.items()})
    assert _total(samples, "stream_app_person_item_seconds_count") >= events
    # Ingest's batches held every input record once: the lines and each bounded run's marker on
    # every input partition (one worker, nothing read twice).
    markers = len(PHASES) * touchpoints.partitions
    assert _total(samples, "stream_app_stage_batch_records_sum", stage="ingest") == lines + markers
    for stage in ("ingest", "dedupe", "link", "people"):
        assert _total(samples, "stream_app_stage_batch_seconds_count", stage=stage) >= 1, stage

    assert _total(samples, "stream_app_ready") == 1
    assert _total(samples, "stream_app_rebalances_total") >= 1
    assert _total(samples, "stream_app_rebalancing") == 0
    assert _total(samples, "stream_app_recovery_in_progress") == 0
    assert {s.labels["stage"] for s in samples["stream_app_watermark_delay_seconds"]} == {
        "dedupe",
        "link",
        "people",
    }
    tables = {s.labels["table"]: s.value for s in samples["stream_app_table_keys_estimated"]}
    assert tables["person-state"] >= 1 and tables["event-ids"] >= 1
    assert _total(samples, "process_resident_memory_bytes") > 0
    assert _total(samples, "process_cpu_seconds_total") > 0
    assert not [name for name in exported if name.endswith("_created_total")]
