"""Live latency of event-triggered actions, measured from outside one worker.

    .venv/bin/python -m bench.latency --rate 5 --seconds 60
    .venv/bin/python -m bench.latency --rate 300 --seconds 30 --lateness 0s --hops

One worker (`LocalRun`) on the default topology (topics prefixed, plus one store of the bench's:
`BENCH_STORE`), ready and warmed up, then live traffic with event time = wall clock (`occurred_at`
is the moment the line is produced) at `rate` events/s for `seconds`, keyless, round-robin over the
input partitions as `rows.stream_spread`. The traffic is the generator's default mix (the same
lines the warm-up sent, again under new event ids: known people, as the pipeline's maximum rate was
measured) with, in place of some of its lines, triggers of the event-triggered rules whose outcome
is known in advance:

- `welcome`: the `member_register` of a member nobody has seen (through the linker);
- `vip_store_visit`: a `store_visit` of a member whose warm-up order (6,000 CNY) made `vip` true;
- `browse_interest`: the third `product_view` of one category by a customer the warm-up bound to a
  guide (`guide_bind`, then two views of that category).

Each trigger person is used once, so no rule limit or contact cap holds one back; a person in a
rule's holdout (`effect.holdout`) gets a record on `actions-suppressed` instead, counted apart. Guide alerts
keep quiet hours in the store's time zone: the triggers name `BENCH_STORE`, whose zone is chosen
when the run starts so that it is mid-day there; a trigger that would still fall in quiet hours is
counted as `deferred`, not missing.

A consumer outside the worker (confluent-kafka) reads `coupons`, `guide-alerts` and
`actions-suppressed` from the start. An action's latency is the wall clock when that consumer's
poll returned it, minus the trigger's timestamp as the broker stored it (the delivery report's:
CreateTime, set by the producer when `produce` was called, so the producer's linger counts).
Actions are matched to triggers by `trigger_event_id`; after the last trigger the probe waits
until each one has its action, or `wait` seconds, and counts the rest as missing.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from bench.rows import bench_settings, delete_topics, isolated_topology
from stream_app.config import load_topology
from stream_app.config.topology import duration_ms
from stream_app.io.kafka import client_config, make_producer
from stream_app.runner import LocalRun
from stream_app.sample import generate

RULES = ("welcome", "vip_store_visit", "browse_interest")
"""The event-triggered rules of topology.yaml the probe sends triggers for (win-back needs a gap
of 60 days in event time, which live traffic at wall-clock time cannot have)."""
TRIGGER_SHARE = 0.4
"""Of the live events, this share are triggers ..."""
MAX_TRIGGERS_PER_S = 20.0
"""... but at most this many a second (each VIP and browse trigger costs warm-up events)."""
POOL_MAX = 10_000
"""Mix lines the warm-up sends (new people) and the live traffic replays under new ids."""
BENCH_STORE = "LATENCY01"
VIP_AMOUNT = 6000.0
BROWSE_CATEGORY = "bags"
DEFAULT_WAIT_S = 15.0
"""Bounded wait for stragglers after the last trigger, beyond the allowed lateness."""
FETCH_WAIT_MS = 10
"""The outside consumer's fetch.wait.max.ms: its own share of the figure stays small."""
WARM_PAUSE_S = 2.0
"""After the warm-up, before the clock: the warm-up's last events are applied, not mixed in."""
SETTLE_GAP_S = 0.05
"""Between the settle lines (one per input partition) after the warm-up: a trickle, not a burst."""
EVENT_ID = re.compile(rb'"event_id":"([^"]+)"')


# -- pure helpers ------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `p`% of the values at or below it.

    >>> percentile([1, 2, 3, 4], 50), percentile([1, 2, 3, 4], 99), percentile([5], 95)
    (2, 4, 5)
    """
    if not values:
        raise ValueError("percentile of nothing")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Arrival:
    """One record read from an action topic by the outside consumer."""

    topic: str
    rule: str
    trigger_event_id: str
    seen_ms: float
    """Wall clock when the consumer's poll returned it."""
    record_ms: int
    """The record's timestamp (CreateTime: the worker's producer, when it produced it)."""
    emitted_ms: int | None = None
    """The record's `emitted_at`: the worker's wall clock when the person stage decided it."""
    suppressed: str | None = None
    """`actions-suppressed`: the reason."""


@dataclass
class RuleFigures:
    """Latency in ms of one rule's actions (or all rules': `rule` = "all")."""

    rule: str
    sent: int = 0
    received: int = 0
    missing: int = 0
    deferred: int = 0
    """Guide alerts whose trigger fell in the store's quiet hours (deferred by design)."""
    suppressed: dict[str, int] = field(default_factory=dict)
    """Triggers decided but suppressed (reason -> count): `holdout` by design (the rule's
    effect.holdout keeps a share of people out); any other reason means a bug or a bad plan."""
    latencies_ms: list[float] = field(default_factory=list)
    """Arrival at the outside consumer minus the trigger's broker timestamp."""
    worker_ms: list[float] = field(default_factory=list)
    """The action record's timestamp minus the trigger's: leaves out the outside consumer's fetch."""
    decided_ms: list[float] = field(default_factory=list)
    """`emitted_at` minus the trigger's timestamp: up to the person stage's decision."""

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "sent": self.sent,
            "received": self.received,
            "missing": self.missing,
            "deferred": self.deferred,
            "suppressed": dict(self.suppressed),
        }
        for name, values in (
            ("latency", self.latencies_ms),
            ("worker", self.worker_ms),
            ("decided", self.decided_ms),
        ):
            out[name] = quantiles(values)
        return out


def quantiles(values: Sequence[float]) -> dict[str, float] | None:
    """p50/p95/p99/max in ms, None for no values."""
    if not values:
        return None
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def match(
    triggers: Mapping[str, str],
    produced_ms: Mapping[str, int],
    arrivals: Iterable[Arrival],
    deferred: Iterable[str] = (),
) -> dict[str, RuleFigures]:
    """Per rule and overall ("all"): each trigger (event id -> rule) against the first action of
    that rule whose `trigger_event_id` is it. `produced_ms`: event id -> the input record's broker
    timestamp (a trigger without one was never delivered: it counts as sent and missing).
    `deferred`: triggers expected to be held for quiet hours, counted apart from missing.
    Actions of other rules or other causes are left out (`others`)."""
    deferred = set(deferred)
    first: dict[tuple[str, str], Arrival] = {}
    for each in arrivals:
        first.setdefault((each.rule, each.trigger_event_id), each)
    figures = {rule: RuleFigures(rule) for rule in sorted(set(triggers.values()))}
    total = RuleFigures("all")
    for event_id, rule in triggers.items():
        row = figures[rule]
        row.sent += 1
        total.sent += 1
        arrival = first.get((rule, event_id))
        produced = produced_ms.get(event_id)
        if arrival is not None and arrival.suppressed is not None:
            row.suppressed[arrival.suppressed] = row.suppressed.get(arrival.suppressed, 0) + 1
            total.suppressed[arrival.suppressed] = total.suppressed.get(arrival.suppressed, 0) + 1
        elif arrival is not None and produced is not None:
            for target in (row, total):
                target.received += 1
                target.latencies_ms.append(arrival.seen_ms - produced)
                target.worker_ms.append(arrival.record_ms - produced)
                if arrival.emitted_ms is not None:
                    target.decided_ms.append(arrival.emitted_ms - produced)
        elif event_id in deferred:
            row.deferred += 1
            total.deferred += 1
        else:
            row.missing += 1
            total.missing += 1
    return {**figures, "all": total}


def others(triggers: Mapping[str, str], arrivals: Iterable[Arrival]) -> Counter[str]:
    """Actions emitted for causes that are not the probe's triggers (the mix's own), per rule."""
    return Counter(
        a.rule for a in arrivals if a.suppressed is None and triggers.get(a.trigger_event_id) != a.rule
    )


def in_quiet_hours(at_ms: int, zone: str, start: str, end: str) -> bool:
    """Whether `at_ms` falls in the quiet hours [start, end) of `zone` (crossing midnight if
    start > end), as the rule engine keeps them for guide alerts.

    >>> in_quiet_hours(0, "UTC", "22:00", "08:00"), in_quiet_hours(12 * 3600_000, "UTC", "22:00", "08:00")
    (True, False)
    """
    local = datetime.fromtimestamp(at_ms / 1000, tz=UTC).astimezone(ZoneInfo(zone))
    now = (local.hour, local.minute)
    s = tuple(int(x) for x in start.split(":"))
    e = tuple(int(x) for x in end.split(":"))
    return (s <= now or now < e) if s > e else (s <= now < e)


def midday_zone(now: datetime) -> str:
    """A fixed-offset zone (`Etc/GMT±N`) where `now` is nearest 14:00: far from quiet hours for the
    length of any run.

    >>> midday_zone(datetime(2026, 12, 1, 20, 0, tzinfo=UTC))  # 14:00 is UTC-6
    'Etc/GMT+6'
    """
    best = min(range(-12, 15), key=lambda hours: abs((now.hour + now.minute / 60 + hours) % 24 - 14))
    return "Etc/GMT" if best == 0 else f"Etc/GMT{-best:+d}"


def retimed(line: bytes, now_iso: str, suffix: str) -> tuple[bytes, str | None]:
    """A mix line with `occurred_at` = now and its event id made new (`suffix`); a line that is not
    an event with a valid time (the mix's malformed ~1%) goes as it was. Returns (line, event id).

    >>> retimed(b'{"event_id":"e1","occurred_at":"2026-11-22T10:00:00+08:00"}', "T", "-x")
    (b'{"event_id":"e1-x","occurred_at":"T"}', 'e1-x')
    >>> retimed(b"not json", "T", "-x")
    (b'not json', None)
    """
    try:
        event = orjson.loads(line)
        if not isinstance(event, dict) or not isinstance(event.get("event_id"), str):
            return line, None
        datetime.fromisoformat(event["occurred_at"])
    except (orjson.JSONDecodeError, TypeError, ValueError, KeyError):
        return line, None
    event["event_id"] += suffix
    event["occurred_at"] = now_iso
    return orjson.dumps(event), event["event_id"]


def now_iso(wall_s: float) -> str:
    return datetime.fromtimestamp(wall_s, tz=UTC).isoformat(timespec="milliseconds")


# -- the traffic ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """The probe's own people: what the warm-up sends for them, and the live triggers by rule."""

    warmup: list[dict[str, Any]]
    triggers: list[tuple[str, dict[str, Any]]]
    """(rule, event without `occurred_at`), in the order they go live."""


def trigger_plan(tag: str, count: int, guide: str = "GLAT01") -> Plan:
    """`count` triggers, the rules in turn, each for a person of its own whom no other line names.

    >>> [rule for rule, _ in trigger_plan("t", 4).triggers]
    ['welcome', 'vip_store_visit', 'browse_interest', 'welcome']
    """
    warmup: list[dict[str, Any]] = []
    triggers: list[tuple[str, dict[str, Any]]] = []
    for n in range(count):
        rule = RULES[n % len(RULES)]
        person = f"{tag}{n:06d}"
        base = {"event_id": f"lat-{person}", "channel": "app"}
        if rule == "welcome":
            event = {**base, "event_type": "member_register", "identities": {"member_id": f"LM{person}"}}
        elif rule == "vip_store_visit":
            member = {"member_id": f"LV{person}"}
            warmup.append(
                {
                    "event_id": f"lat-{person}-order",
                    "event_type": "order_paid",
                    "channel": "pos",
                    "identities": {**member, "order_no": f"LO{person}"},
                    "store_id": BENCH_STORE,
                    "properties": {"amount": VIP_AMOUNT, "currency": "CNY", "category": "bags"},
                }
            )
            event = {**base, "event_type": "store_visit", "channel": "pos", "identities": member}
            event["store_id"] = BENCH_STORE
        else:
            ids = {"unionid": f"LU{person}", "openid": f"LP{person}"}
            warmup.append(
                {
                    "event_id": f"lat-{person}-bind",
                    "event_type": "guide_bind",
                    "channel": "wecom",
                    "identities": {"wecom_external_userid": f"LW{person}", "unionid": ids["unionid"]},
                    "store_id": BENCH_STORE,
                    "guide_id": guide,
                }
            )
            view = {"event_type": "product_view", "channel": "miniprogram", "identities": ids}
            view["properties"] = {"sku": "SKU-BAG-001", "category": BROWSE_CATEGORY}
            for k in (1, 2):
                warmup.append({**view, "event_id": f"lat-{person}-view{k}"})
            # A product view naming the store: its alert keeps that store's quiet hours.
            event = {**base, **view, "store_id": BENCH_STORE}
        triggers.append((rule, event))
    return Plan(warmup, triggers)


def mix_pool(lines: int, seed: int = 11) -> list[bytes]:
    """The generator's default mix, `lines` of it (people = what a day of that many lines needs)."""
    day = generate(people=max(10, math.ceil(lines / 2.8 * 1.05)), days=1, seed=seed)
    return day.lines[:lines]


def probe_topology(tmp: Path, tag: str, lateness: str | None, zone: str) -> Path:
    """`rows.isolated_topology` plus `BENCH_STORE` (time zone `zone`) and, if given, another
    `allowed_lateness`: a modified copy for this run, the repository's file untouched."""
    path = isolated_topology(tmp, tag)
    data = yaml.safe_load(path.read_text())
    data["stores"][BENCH_STORE] = {"duty_guide": "GLAT00", "timezone": zone}
    if lateness is not None:
        data["allowed_lateness"] = lateness
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


class ActionReader(threading.Thread):
    """The outside consumer: every record of the action topics, with the wall clock of its poll."""

    def __init__(self, bootstrap: str, topics: list[str]):
        super().__init__(daemon=True, name="latency-reader")
        conf = client_config(
            bootstrap,
            None,
            **{
                "group.id": f"latency-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": FETCH_WAIT_MS,
            },
        )
        self.consumer = Consumer(conf)
        existing = self.consumer.list_topics(timeout=10).topics
        self.consumer.assign(
            [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in existing[t].partitions]
        )
        self.arrivals: list[Arrival] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                for msg in self.consumer.consume(500, 0.05):
                    seen = time.time() * 1000
                    error = msg.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            self.errors.append(str(error))
                        continue
                    arrival = _arrival(msg, seen)
                    if arrival is not None:
                        self.arrivals.append(arrival)
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


def _arrival(msg: Message, seen_ms: float) -> Arrival | None:
    try:
        value = orjson.loads(msg.value() or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or "trigger_event_id" not in value:
        return None
    emitted = value.get("emitted_at")
    return Arrival(
        topic=msg.topic() or "",
        rule=str(value.get("rule")),
        trigger_event_id=str(value["trigger_event_id"]),
        seen_ms=seen_ms,
        record_ms=msg.timestamp()[1],
        emitted_ms=int(datetime.fromisoformat(emitted).timestamp() * 1000) if emitted else None,
        suppressed=value.get("reason") if "action" in value else None,
    )


class Sender:
    """One producer to the input topic, round-robin over its partitions, keeping each delivered
    event's broker timestamp (ms)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int):
        self.producer = make_producer(bootstrap)
        # Connected and with the topic's metadata before the first record: else the first records
        # wait ~0.5 s for both with their timestamps (and event times) already set, and the
        # worker's input clock starts from a source that looked half a second behind.
        self.producer.list_topics(topic, timeout=10)
        self.topic = topic
        self.partitions = partitions
        self.n = 0
        self.produced_ms: dict[str, int] = {}
        self.timestamp_types: Counter[int] = Counter()
        self.errors: list[str] = []

    def send(self, line: bytes, event_id: str | None) -> None:
        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self.errors.append(str(err))
            elif event_id is not None:
                kind, ts = msg.timestamp()
                self.timestamp_types[kind] += 1
                self.produced_ms[event_id] = ts

        while True:
            try:
                self.producer.produce(
                    self.topic, value=line, partition=self.n % self.partitions, on_delivery=delivered
                )
                break
            except BufferError:
                self.producer.poll(0.01)
        self.n += 1
        self.producer.poll(0)

    def flush(self) -> None:
        left = self.producer.flush(60)
        if left or self.errors:
            raise RuntimeError(f"input not delivered: {left} queued, errors {self.errors[:3]}")


# -- one case ------------------------------------------------------------------------------------


@dataclass
class Case:
    """One run of the probe: what was asked, what was sent, and the figures."""

    rate: float
    seconds: float
    lateness: str
    zone: str
    sent: int = 0
    sent_rate: float = 0.0
    """Live events per second actually produced (the sender may fall behind `rate`)."""
    wait_s: float = 0.0
    """How long the probe waited after the last trigger."""
    tail_events: int = 0
    """Mix events sent after the last trigger, while the probe waited (`tail`)."""
    waited_s: float = 0.0
    """How long it took until every trigger had its action (or `wait_s`, if some never came)."""
    figures: dict[str, RuleFigures] = field(default_factory=dict)
    other_actions: dict[str, int] = field(default_factory=dict)
    hops: dict[str, dict[str, float] | None] = field(default_factory=dict)
    timestamp_type: str = ""
    gc: dict[str, dict[str, float]] = field(default_factory=dict)
    """The worker's garbage collections during the live traffic, per generation (`gc_summary`)."""
    timeline: list[dict[str, Any]] = field(default_factory=list)
    """`keep`: per trigger, its input timestamp and when each hop and the action saw it (ms)."""

    def overall(self) -> RuleFigures:
        return self.figures.get("all", RuleFigures("all"))

    def to_json(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "seconds": self.seconds,
            "allowed_lateness": self.lateness,
            "store_zone": self.zone,
            "sent": self.sent,
            "sent_rate": round(self.sent_rate, 1),
            "wait_s": self.wait_s,
            "waited_s": round(self.waited_s, 1),
            "tail_events": self.tail_events,
            "input_timestamp": self.timestamp_type,
            "rules": {rule: f.summary() for rule, f in self.figures.items()},
            "other_actions": self.other_actions,
            "hops_ms": self.hops,
            "gc": self.gc,
        }


def run_case(
    broker_url: str,
    bootstrap: str,
    tmp: Path,
    rate: float,
    seconds: float,
    lateness: str | None = None,
    wait_s: float | None = None,
    hops: bool = False,
    tail: bool = True,
    progress: Any = None,
    keep: Path | None = None,
) -> Case:
    """The probe on a worker of its own (fresh topics on the given broker, deleted afterwards).

    `lateness`: `allowed_lateness` for this run (else topology.yaml's). `wait_s`: how long to wait
    for actions after the last trigger (default: the lateness plus `DEFAULT_WAIT_S`). `tail`: the
    mix goes on at `rate` while the probe waits (live traffic does not stop; without it the quiet
    partitions move on with the wall clock from their newest event, `stream_app.control.source_watermark`).
    `keep`: a directory to copy the worker's log into, with `timeline.json` (`Case.timeline`)."""
    say = progress or (lambda _text: None)
    tag = f"lt{uuid.uuid4().hex[:6]}"
    zone = midday_zone(datetime.now(UTC))
    topology_path = probe_topology(tmp, tag, lateness, zone)
    topology = load_topology(topology_path)
    lateness_ms = duration_ms(topology.allowed_lateness)
    wait = wait_s if wait_s is not None else lateness_ms / 1000 + DEFAULT_WAIT_S
    case = Case(rate, seconds, topology.allowed_lateness, zone, wait_s=wait)
    total = max(1, round(rate * seconds))
    n_triggers = max(1, round(total * min(TRIGGER_SHARE, MAX_TRIGGERS_PER_S / rate)))
    every = total / n_triggers
    plan = trigger_plan(tag, n_triggers)
    pool = mix_pool(min(POOL_MAX, total))
    settings = bench_settings(broker_url, topology_path, tmp / tag, tag)
    if keep is not None:  # Faust's rebalances and the worker's gc pauses are logged at info
        settings = settings.model_copy(update={"log_level": "info"})
    spec = topology.topics.touchpoints
    policy = topology.contact_policy
    with LocalRun(settings, topology) as run:
        try:
            say(f"worker ready; warm-up: {len(pool):,} mix lines, {len(plan.warmup):,} trigger preparations")
            warm = Sender(run.bootstrap, spec.name, spec.partitions)
            for line in pool:
                warm.send(*retimed(line, now_iso(time.time()), ""))
            for event in plan.warmup:
                warm.send(orjson.dumps({**event, "occurred_at": now_iso(time.time())}), event["event_id"])
            warm.flush()
            run.finish_input(close_event_time=False, timeout=300)
            time.sleep(WARM_PAUSE_S + (lateness_ms / 1000 if lateness_ms <= 30_000 else 0))
            # Settle: one mix line for each input partition, then a pause. The warm-up is a burst
            # into a worker that has just started (first-use costs, new people): every event of it
            # reached ingest ~0.5-1 s after its event time, and a quiet partition follows the
            # clock from its newest event that far behind (`control.source_watermark`), so
            # until each partition had a live event (8 / rate seconds) the first triggers took
            # 1.0-1.7 s. Live traffic that has been running has no such burst just before it.
            valid = (line for line in pool if retimed(line, "", "")[1] is not None)
            for _, line in zip(range(spec.partitions), valid, strict=False):
                warm.send(*retimed(line, now_iso(time.time()), "-settle"))
                time.sleep(SETTLE_GAP_S)
            warm.flush()
            time.sleep(WARM_PAUSE_S)
            outputs = [
                topology.topics.coupons,
                topology.topics.guide_alerts,
                topology.topics.actions_suppressed,
            ]
            gc_before = run.scrape_metrics() or ""
            reader = ActionReader(run.bootstrap, [t.name for t in outputs])
            reader.start()
            sender = warm  # (connected: a long-lived live producer)
            triggers: dict[str, str] = {}
            deferred: list[str] = []
            say(f"live: {total:,} events at {rate:g}/s, {n_triggers:,} of them triggers")
            started = time.time()
            next_trigger, n, sent_s = 0, 0, 0.0
            expected: set[tuple[str, str]] = set()
            last: float | None = None
            check_at = 0.0
            while True:
                now = time.time()
                if last is None and n >= total:
                    sent_s, last = now - started, now
                    expected = {(rule, e) for e, rule in triggers.items() if e not in deferred}
                    say(f"sent in {sent_s:.1f} s; waiting up to {wait:.0f} s for the actions")
                if last is not None:
                    if now - last >= wait:
                        break
                    if now >= check_at:
                        check_at = now + 0.2
                        run.check_alive()
                        sender.producer.poll(0)
                        if expected <= {(a.rule, a.trigger_event_id) for a in list(reader.arrivals)}:
                            break
                    if not tail:
                        time.sleep(0.05)
                        continue
                due = started + n / rate
                if due > now:
                    time.sleep(min(due - now, 0.05))
                    continue
                if n < total and next_trigger < n_triggers and n >= next_trigger * every:
                    rule, event = plan.triggers[next_trigger]
                    next_trigger += 1
                    triggers[event["event_id"]] = rule
                    if rule != "welcome" and in_quiet_hours(
                        int(now * 1000), zone, policy.quiet_hours.start, policy.quiet_hours.end
                    ):
                        deferred.append(event["event_id"])
                    sender.send(orjson.dumps({**event, "occurred_at": now_iso(now)}), event["event_id"])
                else:
                    sender.send(*retimed(pool[n % len(pool)], now_iso(now), f"-live{n // len(pool)}"))
                n += 1
            sender.flush()
            case.gc = gc_summary(gc_before, run.scrape_metrics() or "")
            case.sent, case.sent_rate, case.tail_events = total, total / max(sent_s, 1e-9), n - total
            assert last is not None
            case.waited_s = time.time() - last
            reader.stop()
            case.figures = match(triggers, sender.produced_ms, reader.arrivals, deferred)
            case.other_actions = dict(others(triggers, reader.arrivals))
            kinds = {0: "not available", 1: "CreateTime", 2: "LogAppendTime"}
            case.timestamp_type = "/".join(kinds.get(k, str(k)) for k in sender.timestamp_types)
            seen: dict[str, dict[str, int]] = {}
            if hops:
                case.hops = hop_delays(run.bootstrap, topology, triggers, sender.produced_ms, seen)
            if keep is not None:
                case.timeline = timeline(triggers, sender.produced_ms, reader.arrivals, seen)
        finally:
            run.stop()
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                if run.worker_log.exists():
                    shutil.copy(run.worker_log, keep / "worker.log")
                (keep / "timeline.json").write_bytes(orjson.dumps(case.timeline, option=orjson.OPT_INDENT_2))
            delete_topics(bootstrap, (tag,))
    return case


# -- where the time goes ---------------------------------------------------------------------------


def hop_delays(
    bootstrap: str,
    topology: Any,
    triggers: Mapping[str, str],
    produced_ms: Mapping[str, int],
    by_event: dict[str, dict[str, int]] | None = None,
) -> dict[str, dict[str, float] | None]:
    """For each internal hop, the first record naming a trigger's event id: its timestamp (the
    worker's producer, CreateTime) minus the trigger's input timestamp, p50/p95/p99/max in ms.
    Internal records are envelopes (newline-separated items), found here by the event id in them.
    `by_event`, when given, gets hop label -> event id -> that record's timestamp."""
    i = topology.internal_topics
    topics = {
        "ingest -> events_by_id": i.events_by_id.name,
        "dedupe -> linker (new people)": i.linker.name,
        "-> person_events": i.person_events.name,
    }
    found: dict[str, dict[str, int]] = {name: {} for name in topics.values()}
    consumer = Consumer(
        client_config(
            bootstrap,
            None,
            **{
                "group.id": f"latency-hops-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            },
        )
    )
    try:
        existing = consumer.list_topics(timeout=10).topics
        parts = [TopicPartition(t, p, OFFSET_BEGINNING) for t in found for p in existing[t].partitions]
        consumer.assign(parts)
        remaining = {(p.topic, p.partition) for p in parts}
        idle = time.monotonic()
        while remaining and time.monotonic() - idle < 10:
            for msg in consumer.consume(1000, 0.5):
                idle = time.monotonic()
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        remaining.discard((msg.topic() or "", msg.partition() or 0))
                    continue
                seen = found[msg.topic() or ""]
                for raw in EVENT_ID.findall(msg.value() or b""):
                    event_id = raw.decode()
                    if event_id in triggers:
                        seen.setdefault(event_id, msg.timestamp()[1])
    finally:
        consumer.close()
    out: dict[str, dict[str, float] | None] = {}
    for label, name in topics.items():
        delays = [ts - produced_ms[e] for e, ts in found[name].items() if e in produced_ms]
        out[label] = quantiles(delays)
        if out[label] is not None:
            out[label] = {**out[label], "n": float(len(delays))}  # type: ignore[dict-item]
        if by_event is not None:
            by_event[label] = found[name]
    return out


def gc_counts(metrics_text: str) -> dict[str, dict[str, float]]:
    """From a worker's /metrics: per generation, collections, seconds in them, and those over 50 ms
    (`stream_app_gc_pause_seconds`, `stream_app.worker.gc_pauses`)."""
    out: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if not sample.name.startswith("stream_app_gc_pause_seconds_"):
                continue
            row = out.setdefault(sample.labels["generation"], {"count": 0.0, "seconds": 0.0, "le_50ms": 0.0})
            if sample.name.endswith("_count"):
                row["count"] = sample.value
            elif sample.name.endswith("_sum"):
                row["seconds"] = sample.value
            elif sample.name.endswith("_bucket") and float(sample.labels["le"]) == 0.05:
                row["le_50ms"] = sample.value
    return out


def gc_summary(before: str, after: str) -> dict[str, dict[str, float]]:
    """The collections between two scrapes: per generation `count`, `seconds`, `over_50ms`.

    >>> n = 'stream_app_gc_pause_seconds_count{generation="2"} '
    >>> f = 'stream_app_gc_pause_seconds_bucket{generation="2",le="0.05"} '
    >>> gc_summary(n + "1", n + "4" + chr(10) + f + "1")
    {'2': {'count': 3.0, 'seconds': 0.0, 'over_50ms': 2.0}}
    """
    a, b = gc_counts(before), gc_counts(after)
    out = {}
    for gen, end in sorted(b.items()):
        start = a.get(gen, {"count": 0.0, "seconds": 0.0, "le_50ms": 0.0})
        count = end["count"] - start["count"]
        fast = end["le_50ms"] - start["le_50ms"]
        seconds = round(end["seconds"] - start["seconds"], 4)
        out[gen] = {"count": float(count), "seconds": seconds, "over_50ms": float(count - fast)}
    return out


def timeline(
    triggers: Mapping[str, str],
    produced_ms: Mapping[str, int],
    arrivals: Iterable[Arrival],
    hops: Mapping[str, Mapping[str, int]],
) -> list[dict[str, Any]]:
    """Per trigger in input order: its input timestamp (ms since the epoch), then each hop's and the
    action's delay after it (ms), to match the slow ones against the worker's log.

    >>> a = Arrival("coupons", "welcome", "e1", seen_ms=1500.0, record_ms=1400, emitted_ms=1390)
    >>> timeline({"e1": "welcome"}, {"e1": 1000}, [a], {"ingest": {"e1": 1040}})
    [{'event_id': 'e1', 'rule': 'welcome', 'input_ms': 1000, 'ingest': 40, 'decided': 390, \
'worker': 400, 'seen': 500.0}]
    """
    first: dict[str, Arrival] = {}
    for each in arrivals:
        first.setdefault(each.trigger_event_id, each)
    rows = []
    for event_id, rule in sorted(triggers.items(), key=lambda item: produced_ms.get(item[0], 0)):
        t0 = produced_ms.get(event_id)
        if t0 is None:
            continue
        row: dict[str, Any] = {"event_id": event_id, "rule": rule, "input_ms": t0}
        for label, found in hops.items():
            if event_id in found:
                row[label] = found[event_id] - t0
        a = first.get(event_id)
        if a is not None:
            if a.emitted_ms is not None:
                row["decided"] = a.emitted_ms - t0
            row["worker"] = a.record_ms - t0
            row["seen"] = a.seen_ms - t0
            if a.suppressed:
                row["suppressed"] = a.suppressed
        rows.append(row)
    return rows


# -- the command line ------------------------------------------------------------------------------


def render(case: Case) -> str:
    """The figures as text: one line per rule, then the overall line and what limits it."""

    def ms(q: dict[str, float] | None, key: str) -> str:
        return f"{q[key] / 1000:.3f}" if q else "-"

    lines = [
        f"latency probe: {case.sent:,} live events at {case.sent_rate:,.1f}/s (asked {case.rate:g}/s) "
        f"for {case.seconds:g} s, allowed_lateness {case.lateness}, store zone {case.zone}; "
        f"waited {case.waited_s:.1f} s of at most {case.wait_s:.0f} s after the last trigger "
        f"({case.tail_events:,} mix events sent meanwhile)",
        "clock: outside consumer's poll (wall clock) - trigger's input timestamp "
        f"({case.timestamp_type or '?'}, from the delivery report); seconds",
        f"{'rule':<16} {'sent':>6} {'recv':>6} {'miss':>5} {'defer':>5} "
        f"{'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}   {'worker p50/p99':>15}  {'decided p50/p99':>15}",
    ]
    for rule, f in case.figures.items():
        q, w, d = quantiles(f.latencies_ms), quantiles(f.worker_ms), quantiles(f.decided_ms)
        extra = f"  suppressed {f.suppressed}" if f.suppressed else ""
        lines.append(
            f"{rule:<16} {f.sent:>6} {f.received:>6} {f.missing:>5} {f.deferred:>5} "
            f"{ms(q, 'p50'):>8} {ms(q, 'p95'):>8} {ms(q, 'p99'):>8} {ms(q, 'max'):>8}   "
            f"{ms(w, 'p50') + '/' + ms(w, 'p99'):>15}  {ms(d, 'p50') + '/' + ms(d, 'p99'):>15}{extra}"
        )
    if case.other_actions:
        lines.append(f"actions for the mix's own events (not measured): {case.other_actions}")
    for hop, q in case.hops.items():
        shown = (
            f"p50 {q['p50'] / 1000:.3f} p99 {q['p99'] / 1000:.3f} max {q['max'] / 1000:.3f} s ({q['n']:.0f})"
            if q
            else "-"
        )
        lines.append(f"hop {hop:<30} {shown}")
    if case.gc:
        shown = ", ".join(
            f"gen{gen} {g['count']:.0f} ({g['seconds']:.3f} s, {g['over_50ms']:.0f} over 50 ms)"
            for gen, g in case.gc.items()
        )
        lines.append(f"worker gc during the live traffic: {shown}")
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=5.0, help="live events per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the live traffic runs")
    parser.add_argument("--lateness", help="allowed_lateness for this run (a modified topology copy)")
    parser.add_argument("--wait", type=float, help="seconds to wait for actions after the last trigger")
    parser.add_argument("--hops", action="store_true", help="also each internal hop's delay")
    parser.add_argument(
        "--no-tail", action="store_true", help="stop all traffic at the last trigger (no mix while waiting)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--keep", type=Path, help="copy the worker's log here, with timeline.json (each trigger's hops)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Case:
    from stream_app.io.broker import EmbeddedBroker

    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="stream-app-latency-") as name:
        tmp = Path(name)
        with EmbeddedBroker(log_path=tmp / "broker.log") as broker:
            case = run_case(
                broker.url,
                broker.bootstrap,
                tmp,
                args.rate,
                args.seconds,
                args.lateness,
                args.wait,
                args.hops,
                tail=not args.no_tail,
                progress=print,
                keep=args.keep,
            )
    print(render(case))
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(case.to_json(), option=orjson.OPT_INDENT_2))
    return case


if __name__ == "__main__":
    main()
