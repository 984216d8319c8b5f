"""The person stage's state is written only once the batch's outputs have landed (no broker).

A person's state records what was decided (an event applied, a merged fragment handed over), and a
replay skips what it records: state stored ahead of an output that never landed loses that output
for good. Here the producer holds every record unacknowledged until the test acknowledges it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from stream_app.worker.runtime import Outbox
from stream_app.worker.stage_runner import send_batch


class HeldProducer:
    """Takes records as `StageProducer.produce` does and acknowledges them only when told."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []
        self._unacked: list[Any] = []

    def produce(self, deliveries, topic, key, value, partition=None, headers=None) -> None:
        deliveries.produced += 1
        self.sent.append((topic, value))
        self._unacked.append(deliveries)

    def acknowledge_all(self) -> None:
        unacked, self._unacked = self._unacked, []
        for deliveries in unacked:
            deliveries.on_delivery(None, _Message())


class _Message:
    def topic(self) -> str:
        return "out"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0


class Stage:
    """A stage whose `end_batch` writes its state as a changelog record on the same outbox."""

    def __init__(self, state_after_outputs: bool) -> None:
        self.state_after_outputs = state_after_outputs
        self.producer = HeldProducer()
        self.outbox = Outbox(self.producer, {"out": 1, "changelog": 1}, frozenset())  # type: ignore[arg-type]
        self.state_written = False

    async def handle(self, record: Any) -> None:
        self.outbox.add("out", b"k", b"absorb")

    def end_batch(self) -> None:
        self.state_written = True
        self.outbox.add("changelog", b"k", b"alias")


def _run_until_blocked(stage: Stage) -> tuple[asyncio.Task[None], asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    loop.run_until_complete(stage.handle(None))
    task = loop.create_task(send_batch(stage))  # type: ignore[arg-type]
    loop.run_until_complete(asyncio.sleep(0.05))
    return task, loop


def test_state_waits_until_the_outputs_are_acknowledged():
    stage = Stage(state_after_outputs=True)
    task, loop = _run_until_blocked(stage)
    try:
        # A crash now (the outputs not acknowledged) leaves the state as it was: the batch is
        # read again and its merge hands the fragment over again.
        assert stage.producer.sent == [("out", b"absorb")]
        assert not stage.state_written and not task.done()
        stage.producer.acknowledge_all()
        loop.run_until_complete(asyncio.wait_for(task, 5))
        assert stage.state_written
        assert stage.producer.sent == [("out", b"absorb"), ("changelog", b"alias")]
    finally:
        loop.close()


def test_a_stage_without_it_writes_state_and_outputs_in_one_send():
    stage = Stage(state_after_outputs=False)
    task, loop = _run_until_blocked(stage)
    try:
        assert task.done() and stage.state_written
        assert stage.producer.sent == [("out", b"absorb"), ("changelog", b"alias")]
    finally:
        loop.close()


def test_a_batch_with_no_outputs_writes_its_state_without_waiting():
    stage = Stage(state_after_outputs=True)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(send_batch(stage), 5))  # type: ignore[arg-type]
        assert stage.state_written and stage.producer.sent == [("changelog", b"alias")]
    finally:
        loop.close()


def test_the_person_stage_asks_for_it():
    from stream_app.worker.person_stage import PersonStage

    assert PersonStage.state_after_outputs is True
