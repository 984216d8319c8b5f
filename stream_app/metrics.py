"""Prometheus metrics, by the book: `_total` counters, seconds, and low-cardinality labels only.

Event types and channels come from producers, so only the known ones become label values; anything
else is counted as `other`. Never a person, a phone, a guide: those are unbounded (and PII).

What the stages count is defined here (this module imports no Faust: the pure cores count through
it). What the worker's Faust machinery knows (consumer lag, rebalances, recovery, watermarks, table
sizes) is read at scrape time by `stream_app.worker.worker_metrics`, on the same registry, and the
process's own CPU, memory and file descriptors by prometheus-client's standard collectors.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

KNOWN_EVENT_TYPES = frozenset(
    {
        "page_view",
        "product_view",
        "add_to_cart",
        "order_paid",
        "store_visit",
        "member_register",
        "login",
        "coupon_redeemed",
        "wecom_message",
        "guide_bind",
    }
)
KNOWN_CHANNELS = frozenset(
    {
        "miniprogram",
        "official_account",
        "app",
        "web",
        "pos",
        "tmall",
        "jd",
        "douyin",
        "wecom",
        "crm",
        "sms",
    }
)


ACTION_LATENCY_BUCKETS = (
    *(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
    *(30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600),
)
"""Seconds: fine around the 1 s an event-triggered action is allowed (p99), and no gap wider than
1.5x above a minute, for actions that wait out an absence window (30 min) plus the lateness."""


def bounded(value: str, known: frozenset[str]) -> str:
    """`value` if it is a known label value, else `other`."""
    return value if value in known else "other"


class Metrics:
    """All of a worker's metrics on one registry (inject your own in tests)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages_in = Counter(
            "stream_app_messages_in_total", "Messages read from the input topic", registry=r
        )
        self.events_valid = Counter(
            "stream_app_events_valid_total",
            "Events that passed validation",
            ["event_type", "channel"],
            registry=r,
        )
        self.events_dlq = Counter(
            "stream_app_events_dlq_total", "Messages sent to the DLQ", ["reason"], registry=r
        )
        self.dlq_repeats_skipped = Counter(
            "stream_app_dlq_repeats_skipped_total",
            "Invalid inputs read again after a restart that were already on the DLQ",
            registry=r,
        )
        self.dedupe_event_ids = Gauge(
            "stream_app_dedupe_event_ids",
            "Event ids the de-duplicator remembers on this worker, as counted by its last expiry "
            "pass (bounded by dedupe.retention)",
            registry=r,
        )
        self.dedupe_event_ids_expired = Counter(
            "stream_app_dedupe_event_ids_expired_total",
            "Event ids forgotten after dedupe.retention of event time",
            registry=r,
        )
        self.events_duplicate = Counter(
            "stream_app_events_duplicate_total",
            "Events dropped because their event_id was processed before",
            registry=r,
        )
        self.events_out = Counter(
            "stream_app_events_normalized_total",
            "Valid, first-seen events passed on to identity resolution",
            registry=r,
        )
        self.identifiers_dropped = Counter(
            "stream_app_identifiers_dropped_total",
            "Identifiers ignored as junk or deny-listed",
            ["type"],
            registry=r,
        )
        self.identity_merges = Counter(
            "stream_app_identity_merges_total", "Profiles merged into an older one", registry=r
        )
        self.identity_conflicts = Counter(
            "stream_app_identity_refused_links_total",
            "Links refused by merge protection",
            ["reason"],
            registry=r,
        )
        self.identity_fast_path = Counter(
            "stream_app_identity_fast_path_total",
            "Events resolved from the local identifier map, without the linker",
            registry=r,
        )
        self.identity_profiles_created = Counter(
            # Not `..._created_total`: prometheus-client adds a `<name>_created` series to every
            # counter, and a family named `..._created` reads as another family's creation time.
            "stream_app_identity_new_people_total",
            "New people (one_ids) made by the linker",
            registry=r,
        )
        self.identity_seconds = Histogram(
            "stream_app_identity_resolve_seconds",
            "Time to resolve one event's identifiers",
            buckets=(0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.05),
            registry=r,
        )
        self.tag_updates = Counter("stream_app_tag_updates_total", "Tag values changed by events", registry=r)
        self.tags_late_events = Counter(
            "stream_app_tags_late_events_total",
            "Events older than their partition's watermark (cumulative tags only)",
            registry=r,
        )
        self.person_item_seconds = Histogram(
            "stream_app_person_item_seconds",
            "Time the person stage takes for one item of its input: an event (tags, audiences, rules "
            "and the actions they decide), a merge notice or a person handed on",
            buckets=(0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.25),
            registry=r,
        )
        self.actions_emitted = Counter(
            "stream_app_actions_emitted_total",
            "Coupons and guide alerts emitted",
            ["rule", "action"],
            registry=r,
        )
        self.actions_suppressed = Counter(
            "stream_app_actions_suppressed_total",
            "Actions held back by a rule limit, the contact policy or a missing recipient",
            ["rule", "reason"],
            registry=r,
        )
        self.effect_actions = Counter(
            "stream_app_effect_actions_total",
            "Actions that opened an attribution window: sent (group treated) or held out (holdout)",
            ["rule", "group"],
            registry=r,
        )
        self.conversions = Counter(
            "stream_app_conversions_total",
            "Conversion records of sent actions (an order re-attributed after a merge counts again)",
            ["rule"],
            registry=r,
        )
        self.conversion_revenue = Counter(
            "stream_app_conversion_revenue_total",
            "Order amounts (currency units) of conversion records of sent actions",
            ["rule"],
            registry=r,
        )
        self.holdout_conversions = Counter(
            "stream_app_holdout_conversions_total",
            "Conversion records of held-out actions: orders in the window of an action not sent",
            ["rule"],
            registry=r,
        )
        self.action_latency = Histogram(
            "stream_app_action_latency_seconds",
            "From the trigger event reaching the input topic (its record timestamp) to its action's "
            "emission (absences and quiet hours included: "
            "by rule, so that event-triggered rules can be told from those that wait)",
            ["rule"],
            buckets=ACTION_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_batch_seconds = Histogram(
            "stream_app_stage_batch_seconds",
            "Time a stage takes for one batch of its input, from its first record to its outputs "
            "handed to the producer (control records included)",
            ["stage"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.stage_batch_records = Histogram(
            "stream_app_stage_batch_records",
            "Records in one batch a stage takes (input records for ingest, envelopes and control "
            "records for the stages after it)",
            ["stage"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000),
            registry=r,
        )
        self.ingest_seconds = Histogram(
            "stream_app_ingest_seconds",
            "Time to validate and normalise one message",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
            registry=r,
        )

        self.audience_changes = Counter(
            "stream_app_audience_changes_total",
            "Audience enters and exits (by the audience's name in topology.yaml; cause event, "
            "expired or merged)",
            ["audience", "change", "cause"],
            registry=r,
        )

        # The process: CPU seconds, resident memory, open files (process_*), the Python version
        # (python_info) and the garbage collector (python_gc_*), as prometheus-client exports them
        # on its default registry.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

        self.broker_up = Gauge(
            "stream_app_broker_up", "1 while the broker answers the worker's probes, 0 while not", registry=r
        )
        self.broker_outages = Counter(
            "stream_app_broker_outages_total", "Times the broker became unreachable", registry=r
        )
        self.broker_client_errors = Counter(
            "stream_app_broker_client_errors_total",
            "Kafka client warnings and errors held back from the log (summarised there instead)",
            registry=r,
        )

    def valid(self, event_type: str, channel: str) -> None:
        self.events_valid.labels(
            bounded(event_type, KNOWN_EVENT_TYPES), bounded(channel, KNOWN_CHANNELS)
        ).inc()

    def conversion(self, rule: str, group: str, amount: float) -> None:
        """One conversion record (`stream_app.effect`), counted by its group."""
        if group == "holdout":
            self.holdout_conversions.labels(rule).inc()
        else:
            self.conversions.labels(rule).inc()
            self.conversion_revenue.labels(rule).inc(amount)
