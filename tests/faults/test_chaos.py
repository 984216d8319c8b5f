"""Kill workers with SIGKILL at random while input flows; the outputs must still be right.

Two workers in one group on the embedded broker run the real topology. A thread produces a
generated population (merges, family tablets, junk identifiers, resent events, malformed lines) at
a steady rate, with merge chains mixed in (people merged into someone who is merged on soon after),
while a seeded loop kills a random worker at random moments and restarts it (sometimes with its
state directory wiped, sometimes killed again while it recovers, sometimes every worker at once). Then the
end-of-input markers close event time, and `tests.faults.verifier` recomputes from the input lines
alone what every output topic must hold.

`STREAM_APP_SOAK=1` runs the same test bigger and longer (the parameters change, the test is the
same); `STREAM_APP_CHAOS_SEED=N` replays a run's choices.
"""

from __future__ import annotations

import os
import random
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

import orjson
import pytest

from stream_app.io.kafka import iter_topics
from stream_app.sample import generate
from stream_app.worker.runtime import envelope_items
from tests.faults.chaos import ChaosLog, SteadyProducer, chaos_loop, with_merge_chains
from tests.faults.verifier import InputRecord, InputRules, verify
from tests.integration.helpers import decoded

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


@dataclass(frozen=True)
class Params:
    people: int
    days: int
    rate: float
    """Input lines a second."""
    min_kills: int
    timeout: int
    chains: int
    """Merge chains added to the generated population (`chaos.with_merge_chains`)."""


SOAK = os.environ.get("STREAM_APP_SOAK", "") not in ("", "0")
PARAMS = (
    Params(people=3000, days=3, rate=40, min_kills=40, timeout=3600, chains=300)
    if SOAK
    else Params(people=350, days=2, rate=40, min_kills=5, timeout=420, chains=30)
)
SEED = int(os.environ.get("STREAM_APP_CHAOS_SEED") or random.SystemRandom().randrange(2**31))


def _profile(port: int):  # type: ignore[no-untyped-def]
    def get(one_id: str) -> dict:
        url = f"http://127.0.0.1:{port}/profiles/{urllib.parse.quote(one_id, safe='')}"
        for attempt in range(5):
            try:
                return orjson.loads(urllib.request.urlopen(url, timeout=10).read())
            except OSError:
                if attempt == 4:
                    raise
                time.sleep(1)
        raise AssertionError("unreachable")

    return get


def _event_ids(bootstrap: str, topic: str) -> set[str]:
    """event_ids on an internal topic (its envelopes carry normalised events), to trace lost ones."""
    seen = set()
    for record in iter_topics(bootstrap, [topic]):
        if not record.is_control:
            seen.update(orjson.loads(item).get("event_id") for item in envelope_items(record.value))
    return seen


@pytest.mark.timeout(PARAMS.timeout)
def test_outputs_stay_right_while_workers_are_killed(env):
    print(f"\nchaos seed {SEED} (STREAM_APP_CHAOS_SEED={SEED} replays it), {PARAMS}")
    day = generate(people=PARAMS.people, days=PARAMS.days, seed=SEED, malformed_rate=0.02)
    lines = with_merge_chains(day.lines, PARAMS.chains, SEED)
    topo = env.topology
    t = topo.topics
    log = ChaosLog(SEED)
    started = time.monotonic()
    with env.local_run() as run:
        run.start_worker(1)
        run.wait_ready(1)
        producer = SteadyProducer(run.bootstrap, t.touchpoints.name, lines, PARAMS.rate)
        producer.start()
        try:
            chaos_loop(run, producer, log, PARAMS.min_kills)
        finally:
            producer.join(300)
        assert producer.failure is None and not producer.errors, (producer.failure, producer.errors[:3])
        assert producer.sent == len(lines)
        run.wait_ready(0)
        run.wait_ready(1)
        run.finish_input(close_event_time=True, timeout=240)
        outputs = decoded(run.read_outputs())
        inputs = [
            InputRecord(r.partition, r.offset, r.value)
            for r in iter_topics(run.bootstrap, [t.touchpoints.name])
            if not r.is_control
        ]
        rules = InputRules.from_topology(topo, env.settings.pii_key.get_secret_value())
        roles = {
            "resolved": t.resolved.name,
            "merges": t.identity_merges.name,
            "conflicts": t.identity_conflicts.name,
            "dlq": t.dlq.name,
            "coupons": t.coupons.name,
            "alerts": t.guide_alerts.name,
        }
        internal = topo.internal_topics

        def trace() -> dict[str, set[str]]:
            return {
                stage: _event_ids(run.bootstrap, name)
                for stage, name in (("dedupe", internal.events_by_id.name), ("link", internal.linker.name))
            }

        report = verify(inputs, outputs, roles, rules, _profile(run.web_port), trace)
        logs = "".join(run.worker_log_of(i).read_text(errors="replace") for i in (0, 1))
    report.figures["kills"] = len(log.kills)
    report.figures["chaos"] = log.summary()
    report.figures["generated"] = (
        f"{len(lines)} lines ({PARAMS.chains} merge chains), {day.malformed} malformed, "
        f"{day.duplicates} resent"
    )
    report.figures["worker_log_tracebacks"] = logs.count("Traceback")
    report.figures["seconds"] = round(time.monotonic() - started)
    print(report.text())
    assert len(log.kills) >= PARAMS.min_kills
    assert report.figures["valid_events"] > 0.9 * len(day.truth) and report.figures["invalid_inputs"] > 10
    assert not report.failed, f"seed {SEED}:\n{report.text()}"
