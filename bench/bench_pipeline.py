"""End-to-end events/s of the real topology on the embedded broker, beside the broker's ceilings.

One worker, one machine, measured in one run: the broker's raw produce and consume rates (the
ceiling no Faust job can beat), then the pipeline on a cold population (every person new: most
events go to the linker) and on a warm one (the same people again: the fast path).

    python bench/bench_pipeline.py [--people 3000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import yaml

from stream_app.config import Settings, load_topology
from stream_app.config.topology import TopicSpec
from stream_app.io.broker import EmbeddedBroker, free_port
from stream_app.io.kafka import ensure_topics, iter_topics, make_producer, produce_values
from stream_app.runner import LocalRun
from stream_app.sample import generate

REPO = Path(__file__).resolve().parents[1]


def isolated(tmp: Path) -> Path:
    data = yaml.safe_load((REPO / "topology.yaml").read_text())
    prefix = f"b{uuid.uuid4().hex[:6]}-"
    for section in ("topics", "internal_topics"):
        for spec in data[section].values():
            spec["name"] = prefix + spec["name"]
    path = tmp / f"{prefix}topology.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def raw_rates(broker: EmbeddedBroker, lines: list[bytes]) -> tuple[float, float]:
    topic = f"raw-{uuid.uuid4().hex[:6]}"
    ensure_topics(broker.bootstrap, [TopicSpec(name=topic, partitions=8)])
    started = time.perf_counter()
    produce_values(make_producer(broker.bootstrap), topic, lines)
    produce = len(lines) / (time.perf_counter() - started)
    started = time.perf_counter()
    count = sum(1 for _ in iter_topics(broker.bootstrap, [topic]))
    consume = count / (time.perf_counter() - started)
    return produce, consume


def pipeline_rates(broker: EmbeddedBroker, tmp: Path, lines: list[bytes]) -> tuple[float, float]:
    path = isolated(tmp)
    settings = Settings(
        broker=broker.url,
        topology=path,
        data_dir=tmp / uuid.uuid4().hex[:6],
        app_id=f"bench-{uuid.uuid4().hex[:6]}",
        web_port=free_port(),
        pii_key="bench",
        fast_rebalance=True,
        log_level="warning",
    )
    again = [
        orjson.dumps({**e, "event_id": e["event_id"] + "-again"})
        for e in (orjson.loads(line) for line in lines if line.startswith(b'{"event_id":"ev-'))
    ]
    with LocalRun(settings, load_topology(path)) as run:
        run.stream_events(lines[:50])  # warm-up: the worker has joined its group and is ready
        run.finish_input(close_event_time=False, timeout=120)
        started = time.perf_counter()
        run.stream_events(lines[50:])
        run.finish_input(close_event_time=False, timeout=600)
        cold = (len(lines) - 50) / (time.perf_counter() - started)
        started = time.perf_counter()
        run.stream_events(again)
        run.finish_input(close_event_time=False, timeout=600)
        warm = len(again) / (time.perf_counter() - started)
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    lines = generate(people=args.people, days=1, seed=3).lines
    rows: dict[str, list[float]] = {k: [] for k in ("produce", "consume", "cold", "warm")}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(log_path=Path(tmp) / "broker.log") as broker:
        for _ in range(args.repeats):
            produce, consume = raw_rates(broker, lines)
            cold, warm = pipeline_rates(broker, Path(tmp), lines)
            for key, value in zip(rows, (produce, consume, cold, warm), strict=True):
                rows[key].append(value)
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"{len(lines):,} events per run, {args.repeats} runs, embedded broker, 1 worker")
    labels = {
        "produce": "ceiling: confluent-kafka produce",
        "consume": "ceiling: confluent-kafka consume",
        "cold": "pipeline, new people (linker)",
        "warm": "pipeline, known people (fast path)",
    }
    for key, label in labels.items():
        runs = " ".join(f"{x:,.0f}" for x in rows[key])
        print(f"{label:38} {med[key]:>12,.0f} /s   runs {runs}   {med[key] / med['consume']:.3f} of consume")


if __name__ == "__main__":
    main()
