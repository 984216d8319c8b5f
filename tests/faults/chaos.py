"""Chaos tools: input at a steady rate from a thread, and a loop that SIGKILLs workers at random.

Seeded (`random.Random(seed)`), so a run's choices (which worker, how long to wait, whether its
state directory is wiped, whether it is killed again while it recovers) can be replayed; the
moments themselves are wall-clock and so only approximately the same.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
from dataclasses import dataclass, field

import orjson
from confluent_kafka import Producer

from stream_app.io.kafka import make_producer
from stream_app.runner import LocalRun


class SteadyProducer(threading.Thread):
    """Produces `lines` to `topic` at about `rate` lines a second, then flushes."""

    def __init__(self, bootstrap: str, topic: str, lines: list[bytes], rate: float):
        super().__init__(name="steady-producer", daemon=True)
        self.bootstrap, self.topic, self.lines, self.rate = bootstrap, topic, lines, rate
        self.sent = 0
        self.errors: list[str] = []
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            producer: Producer = make_producer(self.bootstrap)

            def delivered(err: object, _msg: object) -> None:
                if err is not None:
                    self.errors.append(str(err))

            start = time.monotonic()
            for n, line in enumerate(self.lines):
                ahead = start + n / self.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
                while True:
                    try:
                        producer.produce(self.topic, value=line, on_delivery=delivered)
                        break
                    except BufferError:
                        producer.poll(0.05)
                producer.poll(0)
                self.sent += 1
            remaining = producer.flush(120)
            if remaining:
                self.errors.append(f"{remaining} messages undelivered after 120 s")
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
            self.failure = exc


@dataclass
class Kill:
    worker: int
    at_s: float
    """Seconds since the chaos loop started."""
    wiped_state: bool
    during_recovery: bool
    """Killed again before it was ready (its recovery time is not measured)."""
    recovery_s: float | None = None
    """SIGKILL -> the restarted worker's /ready answers 200."""
    all_at_once: bool = False


@dataclass
class ChaosLog:
    seed: int
    kills: list[Kill] = field(default_factory=list)

    def summary(self) -> str:
        rec = [k.recovery_s for k in self.kills if k.recovery_s is not None]
        return (
            f"seed {self.seed}: {len(self.kills)} kills "
            f"({sum(k.wiped_state for k in self.kills)} with state wiped, "
            f"{sum(k.during_recovery for k in self.kills)} during recovery, "
            f"{sum(k.all_at_once for k in self.kills)} with every worker at once); recovery seconds "
            f"{[round(r, 1) for r in rec]}"
        )


def state_dir(run: LocalRun, index: int):  # type: ignore[no-untyped-def]
    return run.worker_dir(index) / "state"


def chaos_loop(
    run: LocalRun,
    producer: SteadyProducer,
    log: ChaosLog,
    min_kills: int,
    gap_s: tuple[float, float] = (1.0, 6.0),
    wipe_p: float = 0.2,
    again_p: float = 0.2,
    all_p: float = 0.1,
    ready_timeout: float = 120.0,
) -> None:
    """Until the input is all sent and at least `min_kills` kills happened: wait a random gap,
    SIGKILL a random worker (sometimes all of them at once), maybe wipe its state, restart it,
    maybe kill it again while it recovers."""
    rng = random.Random(log.seed)
    start = time.monotonic()
    workers = sorted(run.workers)
    while producer.is_alive() or len(log.kills) < min_kills:
        time.sleep(rng.uniform(*gap_s))
        victims = workers if rng.random() < all_p else [rng.choice(workers)]
        killed_at: dict[int, float] = {}
        wiped: dict[int, bool] = {}
        for index in victims:
            killed_at[index] = time.monotonic()
            run.kill_worker(index)
            wiped[index] = rng.random() < wipe_p
            if wiped[index]:
                shutil.rmtree(state_dir(run, index), ignore_errors=True)
        for index in victims:
            run.start_worker(index)
        if rng.random() < again_p:
            index = rng.choice(victims)
            time.sleep(rng.uniform(0.3, 3.0))
            log.kills.append(
                Kill(index, killed_at[index] - start, wiped[index], True, None, len(victims) > 1)
            )
            killed_at[index], wiped[index] = time.monotonic(), False
            run.kill_worker(index)
            run.start_worker(index)
        for index in victims:
            run.wait_ready(index, timeout=ready_timeout)
            recovery = time.monotonic() - killed_at[index]
            log.kills.append(
                Kill(index, killed_at[index] - start, wiped[index], False, recovery, len(victims) > 1)
            )


def with_merge_chains(lines: list[bytes], groups: int, seed: int) -> list[bytes]:
    """`lines` with `groups` merge chains put in at random places (an order kept within each).

    A chain is four people, each with an order, created oldest first (an order number, an openid,
    a WeCom id, another order number), then linked back to front within a few lines: 4 into 3,
    3 into 2, 2 into 1, so each survivor is itself merged soon after, while its absorb may still be
    on its way; then one more order under the newest identifier, which must land on the first.
    A generated day has few merges and hardly any chained ones; this is where the person stage's
    merge path is busiest.
    """
    rng = random.Random(seed)
    out = list(lines)
    for g in range(groups):
        at = rng.randrange(len(out) + 1)
        occurred = _time_near(out, at)
        ids = [
            {"order_no": f"CHAIN{seed % 10**6:06d}{g:04d}A"},
            {"openid": f"oCHAIN{seed % 10**6:06d}{g:04d}"},
            {"wecom_external_userid": f"wmCHAIN{seed % 10**6:06d}{g:04d}"},
            {"order_no": f"CHAIN{seed % 10**6:06d}{g:04d}D"},
        ]

        name, spend = f"chain-{seed}-{g}", lambda: round(rng.uniform(10, 900), 2)
        group = [
            _event(f"{name}-{n}", "order_paid", ids[n], f"{occurred}.{n:03d}", spend()) for n in range(4)
        ]
        group += [
            _event(f"{name}-{4 + k}", "page_view", {**ids[2 - k], **ids[3 - k]}, f"{occurred}.{4 + k:03d}")
            for k in range(3)
        ]
        group.append(_event(f"{name}-7", "order_paid", ids[3], f"{occurred}.007", spend()))
        # Creations a few lines apart, then the links and the last order back to back.
        pos = at
        for n, line in enumerate(group):
            out.insert(min(len(out), pos), line)
            pos += 1 + (2 if n < 4 else 0)
    return out


def _event(
    event_id: str, kind: str, identities: dict[str, str], occurred: str, amount: float | None = None
) -> bytes:
    body: dict[str, object] = {
        "event_id": event_id,
        "event_type": kind,
        "occurred_at": occurred + "+08:00",
        "channel": "web",
        "identities": identities,
    }
    if amount is not None:
        body["properties"] = {"amount": amount, "currency": "CNY"}
    return orjson.dumps(body)


def _time_near(lines: list[bytes], at: int) -> str:
    """`YYYY-MM-DDTHH:MM:SS` of a valid line near `at` (lines are in event-time order)."""
    for line in lines[max(0, at - 5) : at + 5]:
        try:
            value = orjson.loads(line).get("occurred_at", "")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if isinstance(value, str) and len(value) >= 19:
            return value[:19]
    return "2026-11-22T12:00:00"
