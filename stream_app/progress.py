"""How far a bounded run has got, per stage, from scrapes of the worker's `/metrics`; and what the
rules did, from the output topics. Pure: no HTTP, no Kafka (the CLI scrapes and reads).

**What "done" means here.** The unit of every stage is a line of the input file, so each bar runs
to the same known total: a line is *past* a stage once that stage has finished with it, or once an
earlier stage dropped it (DLQ) or the de-duplicator did (a resend). From the worker's counters:

- ingest: `messages_in` (every input record ingest handled, valid or not);
- dedupe: the lines ingest rejected (`messages_in - events_valid`), plus `events_duplicate` and
  `events_normalized` (every valid event is one or the other);
- link: the same rejected and duplicate lines, plus the events resolved without the linker
  (`identity_fast_path`) and those the linker resolved (`identity_resolve_seconds_count`, one
  observation per event);
- people: the same, plus the events the person stage took in. Its counter
  (`person_item_seconds_count`) also counts merge notices and the states they move (two items per
  merge, `identity_merges`), which are taken off, and events handed on to a merged person's
  survivor, which cannot be: so this count is capped at the link count and is an estimate.

These three exact counts say a stage has *handled* every line. What they cannot say is that a
stage's outputs are on the broker, or that the person stage has applied what it holds until event
time passes (a bounded run closes event time at its end markers). So the run is finished only when
the last stage reports `StageDone` for the run's markers (`stream_app.control`; `LocalRun.finish_input`
waits for it), and `StageProgress.finished` is true only then, for every stage alike. The consumer
lag (`stream_app_consumer_lag`) is not used: on internal topics it counts envelopes of many events,
and it moves only when offsets are committed.

The counters are those of one worker: `stream-app run` starts one, so they are the whole pipeline's.

>>> first = Snapshot(0.0, {"stream_app_messages_in_total": 0})
>>> later = Snapshot(2.0, {"stream_app_messages_in_total": 50})
>>> ingest = stage_progress([first, later], total=100)[0]
>>> (ingest.stage, ingest.done, ingest.rate, ingest.eta)
('ingest', 50, 25.0, 2.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

STAGES = ("ingest", "dedupe", "link", "people")

RATE_WINDOW_S = 10.0
"""The rate is over the last this many seconds of scrapes: recent enough to follow a stage that
speeds up when its upstream finishes, long enough not to jump with every batch."""


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text to sample name -> value, summed over labels (`..._total`, `..._count`).

    >>> parse_metrics('a_total{r="x"} 3\\na_total{r="y"} 2\\n')
    {'a_total': 5.0}
    """
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return sums


@dataclass(frozen=True)
class Snapshot:
    """One scrape: when (monotonic seconds) and the worker's samples (`parse_metrics`)."""

    at: float
    samples: Mapping[str, float] = field(default_factory=dict)


def lines_past(samples: Mapping[str, float]) -> dict[str, int]:
    """Per stage, the input lines it has finished with (or that were dropped before it)."""

    def get(name: str) -> int:
        return int(samples.get(f"stream_app_{name}", 0))

    read = get("messages_in_total")
    dropped = max(0, read - get("events_valid_total")) + get("events_duplicate_total")
    fast, linked = get("identity_fast_path_total"), get("identity_resolve_seconds_count")
    people = get("person_item_seconds_count") - 2 * get("identity_merges_total")
    return {
        "ingest": read,
        "dedupe": dropped + get("events_normalized_total"),
        "link": dropped + fast + linked,
        "people": dropped + max(0, min(people, fast + linked)),
    }


@dataclass(frozen=True)
class StageProgress:
    stage: str
    done: int
    """Input lines past this stage (see the module's docstring), at most `total`."""
    total: int
    rate: float | None
    """Lines per second over the last `RATE_WINDOW_S` of scrapes; None before two scrapes."""
    eta: float | None
    """Seconds until `done` reaches `total` at `rate`; 0 once there, None while the rate is 0."""
    finished: bool
    """The run's end markers have been reported done: the only "done" this module trusts."""


def stage_progress(
    snapshots: Sequence[Snapshot], total: int, finished: bool = False, window: float = RATE_WINDOW_S
) -> list[StageProgress]:
    """Each stage's progress after `snapshots` (oldest first) of a run of `total` input lines."""
    if not snapshots:
        return [StageProgress(stage, 0, total, None, None, finished) for stage in STAGES]
    last = snapshots[-1]
    start = next(s for s in snapshots if s.at >= last.at - window)
    if start is last and len(snapshots) > 1:
        start = snapshots[-2]  # scrapes further apart than the window: the last interval
    now, then = lines_past(last.samples), lines_past(start.samples)
    span = last.at - start.at
    result = []
    for stage in STAGES:
        done = min(now[stage], total)
        rate = (done - min(then[stage], total)) / span if span > 0 else None
        if done >= total:
            eta: float | None = 0.0
        elif rate:
            eta = (total - done) / rate
        else:
            eta = None
        result.append(StageProgress(stage, done, total, rate, eta, finished))
    return result


# -- what the rules did ----------------------------------------------------------------------


@dataclass
class RuleActions:
    """One rule's records on the output topics: emitted (coupons or guide alerts) and suppressed
    (`actions-suppressed`) by reason."""

    action: str
    emitted: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "emitted": self.emitted,
            "suppressed": sum(self.suppressed.values()),
            "suppressed_by_reason": dict(sorted(self.suppressed.items())),
        }


def actions_by_rule(
    rules: Mapping[str, str],
    emitted: Iterable[bytes | None],
    suppressed: Iterable[bytes | None],
) -> dict[str, RuleActions]:
    """Records counted per rule, as they are on the topics (delivery is at-least-once: after a
    crash a record may be there twice; consumers de-duplicate on its key).

    `rules`: rule -> its action kind (`coupon`, `guide_alert`), so that rules that did nothing show.

    >>> counts = actions_by_rule(
    ...     {"welcome": "coupon"},
    ...     [b'{"rule": "welcome"}'],
    ...     [b'{"rule": "welcome", "reason": "limit"}'],
    ... )
    >>> counts["welcome"].to_json()["suppressed_by_reason"]
    {'limit': 1}
    """
    counts = {rule: RuleActions(kind) for rule, kind in rules.items()}
    for value in emitted:
        record = orjson.loads(value or b"{}")
        rule = str(record.get("rule", "?"))
        counts.setdefault(rule, RuleActions("?")).emitted += 1
    for value in suppressed:
        record = orjson.loads(value or b"{}")
        rule, reason = str(record.get("rule", "?")), str(record.get("reason", "?"))
        reasons = counts.setdefault(rule, RuleActions(str(record.get("action", "?")))).suppressed
        reasons[reason] = reasons.get(reason, 0) + 1
    return counts
