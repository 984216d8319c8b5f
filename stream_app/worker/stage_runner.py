"""The stage graph at run time: one agent loop for every stage, and the control records between them.

Each stage (`IngestStage`, `DedupeStage`, `LinkStage`, `PersonStage`) handles its records and adds
what it decides to its outbox (`stream_app.worker.runtime`). This module owns everything else, once
for all of them: taking batches, making each record Faust's current event, sending the outbox when
the batch ends and before any control record, and passing watermarks and progress markers along
the graph (`stream_app.control`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import faust

from stream_app.config import Topology
from stream_app.control import (
    Barrier,
    Marker,
    StageDone,
    Watermark,
    Watermarks,
    WatermarkTracker,
    decode_control,
    is_control,
)
from stream_app.metrics import Metrics
from stream_app.worker.dedupe_stage import DedupeStage
from stream_app.worker.ingest_stage import IngestStage
from stream_app.worker.person_stage import PersonStage
from stream_app.worker.runtime import BATCH_MAX, ENVELOPES_MAX, Outbox, TopicNames, as_current, batches

HEARTBEAT_MS = 5_000
"""An unchanged watermark is repeated this often, for stages that restarted and forgot it."""


class Stage(Protocol):
    """What the runner calls on every stage; the optional hooks it calls where a stage has them:

    - `end_batch()`: write the batch's state (`stream_app.worker.state.BatchState`), at each send
      of the stage's outbox; with `state_after_outputs` set, only once the outputs it sent are
      acknowledged (`send_batch`);
    - `persist_landed()`: after each send, where its changelogs are acknowledged up to;
    - `async sent()`: after each send, wait for what must land before the stage goes on;
    - `read_past(message)`: a control record was read at this position of the stage's input."""

    outbox: Outbox

    async def handle(self, record: Any) -> None: ...


async def send_batch(stage: Stage) -> None:
    """The batch's state written, then its outputs handed to the producer (Faust commits the
    batch's offsets only once they are acknowledged: `StageProducer.flush_before_commit`).

    For a stage with `state_after_outputs`, its outputs first, acknowledged, then its state: a
    crash in between reads the batch again and decides it again (at-least-once). The other order
    lost a whole person under chaos: a merged fragment's alias was stored, its hand-over to the
    survivor (its tags) never landed, and the replayed merge was skipped as one already done."""
    if getattr(stage, "state_after_outputs", False) and len(stage.outbox):
        stage.outbox.send()
        await stage.outbox.delivered()
    end_batch = getattr(stage, "end_batch", None)
    if end_batch is not None:
        end_batch()
    stage.outbox.send()
    persist_landed = getattr(stage, "persist_landed", None)
    if persist_landed is not None:
        persist_landed()
    sent = getattr(stage, "sent", None)
    if sent is not None:
        await sent()


class StageRunner:
    """Runs ingest → dedupe → link → people (`Topology.stage_inputs`, the one declaration of the
    order) as Faust agents, with their watermarks and markers."""

    def __init__(
        self,
        app: faust.App,
        topology: Topology,
        names: TopicNames,
        stages: dict[str, Stage],
        control: faust.TopicT,
        topic: Callable[[Any], faust.TopicT],
        now_ms: Callable[[], int],
        metrics: Metrics | None = None,
    ):
        self.app = app
        self.metrics = metrics or Metrics()
        self.stages = stages
        self.ingest: IngestStage = stages["ingest"]  # type: ignore[assignment]
        self.dedupe: DedupeStage = stages["dedupe"]  # type: ignore[assignment]
        self.people: PersonStage = stages["people"]  # type: ignore[assignment]
        self.control = control
        self.now_ms = now_ms
        self.inputs = dict(topology.stage_inputs())
        order = list(self.inputs)
        self.next_stage = dict(zip(order, [*order[1:], None], strict=True))
        self.barriers = {name: Barrier() for name in order}
        parts = {name: spec.partitions for name, spec in self.inputs.items()}
        writers = {
            stage: [f"{stage}:{p}" for p in range(parts[stage])] for stage in ("ingest", "dedupe", "link")
        }
        # Whose watermarks each stage's partitions wait for: the stages that write to its input.
        self.trackers = {
            "dedupe": [WatermarkTracker(writers["ingest"]) for _ in range(parts["dedupe"])],
            "link": [WatermarkTracker(writers["dedupe"]) for _ in range(parts["link"])],
            "people": [WatermarkTracker(writers["dedupe"] + writers["link"]) for _ in range(parts["people"])],
        }
        self.downstream = {
            "ingest": [names.events_by_id],
            "dedupe": [names.linker, names.person_events],
            "link": [names.person_events],
        }
        self._announced: dict[str, tuple[int, bool, int]] = {}
        self._outgoing: dict[str, dict[str, Watermark]] = {}
        """Stage -> writer -> its watermark to pass on when the stage's batch ends."""
        for stage in stages:
            app.agent(topic(self.inputs[stage]), name=stage)(self._agent(stage))

    def _agent(self, stage: str) -> Callable[[faust.StreamT], Any]:
        async def run(stream: faust.StreamT) -> None:
            await self._run(stage, stream)

        return run

    async def _run(self, stage: str, stream: faust.StreamT) -> None:
        """Batches in; control records handled here, behind what the batch sent before them;
        records to the stage, which adds what it decides to its outbox."""
        handle = self.stages[stage].handle
        read_past = getattr(self.stages[stage], "read_past", None)
        seconds = self.metrics.stage_batch_seconds.labels(stage)
        records = self.metrics.stage_batch_records.labels(stage)
        async for events in batches(stream, BATCH_MAX if stage == "ingest" else ENVELOPES_MAX):
            started = time.perf_counter()
            moved: dict[int, Any] = {}  # partition -> its last watermark record in this batch
            for event in events:
                with as_current(event):
                    if is_control(event.headers):
                        control = decode_control(event.value)
                        partition = event.message.partition
                        if isinstance(control, Watermarks):
                            if read_past is not None:
                                read_past(event.message)
                            if stage != "ingest":  # nobody sends watermarks into the input
                                self._observe_watermarks(stage, partition, control)
                                moved[partition] = event
                            continue
                        await self._apply_watermarks(stage, moved)
                        await self.send(stage)
                        if read_past is not None:
                            read_past(event.message)
                        await self._on_marker(stage, partition, control)
                    else:
                        await handle(event)
            await self._apply_watermarks(stage, moved)
            await self.send(stage)
            self._send_watermarks(stage)
            seconds.observe(time.perf_counter() - started)
            records.observe(len(events))

    async def send(self, stage: str) -> None:
        await send_batch(self.stages[stage])

    # -- watermarks ---------------------------------------------------------------------------

    async def announce_input_watermarks(self) -> None:
        """A Faust timer: each input partition's event time, to the stage after ingest."""
        for mark in self.ingest.watermarks():
            self._pass_on("ingest", mark)
        self._send_watermarks("ingest")

    def _observe_watermarks(self, stage: str, partition: int, marks: Watermarks) -> None:
        tracker = self.trackers[stage][partition]
        for mark in marks.marks:
            tracker.observe(mark)

    async def _apply_watermarks(self, stage: str, partitions: dict[int, Any]) -> None:
        """What the watermarks that came in the batch so far move, once per input partition.

        Once per batch, not per watermark record: a stage reads a watermark record from each of
        its writers at each of their batch ends (the person stage from 8 dedupe partitions and the
        linker), and the person stage's send after an advance waits for the broker's
        acknowledgement (`send_batch`). At 300 events/s that was ~20 records a second per
        partition, a send each: the person stage's event time fell behind by a second every
        ~1.5 s (20 s after 30 s of traffic) while the events themselves reached its input in
        0.3 s. Acting at the batch's end instead of at the record changes nothing for an event
        within the lateness: those that follow a watermark in its partition are not older than
        it. (One older than it, late, is taken as if it had come before the watermark.)

        `partitions`: input partition -> its last watermark record of the batch, made Faust's
        current event again while that partition moves (its tables write to that partition)."""
        if not partitions:
            return
        for partition, record in sorted(partitions.items()):  # (keys unique: only they compare)
            now = self.trackers[stage][partition].current()
            if now is None:
                continue
            if stage == "people":
                with as_current(record):
                    self.people.advance(partition, now)
            else:
                if stage == "dedupe":
                    with as_current(record):
                        self.dedupe.sweep(partition, now)
                # Never passed on as idle: a stage whose inputs were idle may be busy with records
                # behind them by the time others hear of it. Only an input partition can be idle.
                self._pass_on(stage, Watermark(f"{stage}:{partition}", now))
        partitions.clear()
        if stage == "people":
            await self.send(stage)

    def _pass_on(self, stage: str, mark: Watermark) -> None:
        """Queued for every partition this stage writes to, when it moved (or as a heartbeat)."""
        wall = self.now_ms()
        t, idle, at = self._announced.get(mark.writer, (None, None, 0))
        if (t, idle) == (mark.t, mark.idle) and wall - at < HEARTBEAT_MS:
            return
        self._announced[mark.writer] = (mark.t, mark.idle, wall)
        self._outgoing.setdefault(stage, {})[mark.writer] = mark

    def _send_watermarks(self, stage: str) -> None:
        """The stage's queued watermarks, one record per downstream partition, behind what it sent.

        Sent when the batch ends, not as each arrives: a watermark only promises what comes after
        it, so the records the rest of the batch sent may go ahead of it."""
        marks = self._outgoing.pop(stage, None)
        if not marks:
            return
        value = Watermarks(tuple(marks[writer] for writer in sorted(marks))).encode()
        for topic in self.downstream[stage]:
            self.stages[stage].outbox.send_control(topic, value)

    # -- progress markers --------------------------------------------------------------------

    async def _on_marker(self, stage: str, partition: int, marker: Marker) -> None:
        stage = marker.stage or stage
        if not self.barriers[stage].observe(partition, marker):
            return
        handed_on = 0
        reader = "people" if stage == "people-settle" else stage
        if reader == "people":
            if marker.close_event_time:
                self.people.close_event_time(partition)
            await self.send(reader)
            # What was handed on before the first round's markers is ahead of them; what came
            # after may not be, and the run needs another round behind it.
            handed_on = self.people.take_handed_on(partition)
        self._send_watermarks(reader)  # (what arrived before the marker goes ahead of it)
        await self._flush(reader)  # everything sent before the marker is on the broker
        next_stage = self.next_stage[stage]
        sources = self.inputs[stage].partitions
        if next_stage is not None:
            downstream = self.inputs[next_stage].name
            forwarded = Marker(marker.run, marker.close_event_time, partition, sources, next_stage).encode()
            self.stages[reader].outbox.send_control(downstream, forwarded)
        else:
            done = StageDone(marker.run, stage, partition, sources, forwarded=handed_on)
            await self.control.send(value=done.encode(), partition=0)
        await self._flush(reader)

    async def _flush(self, stage: str) -> None:
        """The stage's records and Faust's (table changelogs, the control topic) on the broker."""
        await self.stages[stage].outbox.delivered()
        await self.app.producer.flush()
