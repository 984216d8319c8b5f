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


@dataclass
class ChaosLog:
    seed: int
    kills: list[Kill] = field(default_factory=list)

    def summary(self) -> str:
        rec = [k.recovery_s for k in self.kills if k.recovery_s is not None]
        return (
            f"seed {self.seed}: {len(self.kills)} kills "
            f"({sum(k.wiped_state for k in self.kills)} with state wiped, "
            f"{sum(k.during_recovery for k in self.kills)} during recovery); recovery seconds "
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
    ready_timeout: float = 120.0,
) -> None:
    """Until the input is all sent and at least `min_kills` kills happened: wait a random gap,
    SIGKILL a random worker, maybe wipe its state, restart it, maybe kill it again mid-recovery."""
    rng = random.Random(log.seed)
    start = time.monotonic()
    workers = sorted(run.workers)
    while producer.is_alive() or len(log.kills) < min_kills:
        time.sleep(rng.uniform(*gap_s))
        index = rng.choice(workers)
        killed_at = time.monotonic()
        run.kill_worker(index)
        wipe = rng.random() < wipe_p
        if wipe:
            shutil.rmtree(state_dir(run, index), ignore_errors=True)
        run.start_worker(index)
        if rng.random() < again_p:
            time.sleep(rng.uniform(0.3, 3.0))
            log.kills.append(Kill(index, killed_at - start, wipe, during_recovery=True))
            killed_at = time.monotonic()
            run.kill_worker(index)
            run.start_worker(index)
            wipe = False
        run.wait_ready(index, timeout=ready_timeout)
        log.kills.append(Kill(index, killed_at - start, wipe, False, time.monotonic() - killed_at))
