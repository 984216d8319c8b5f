"""The Faust ceiling: a worker with the pipeline's own Faust settings whose one agent does nothing
but take batches and count them. Started by the harness as its own process:

    STREAM_APP_*=...  BENCH_TOPIC=t BENCH_PARTITIONS=8 BENCH_WARMUP=50 BENCH_EXPECT=200050 \
    BENCH_REPORT=/tmp/x.json python -m bench.faust_ceiling

It writes BENCH_REPORT (JSON `{"seen": n, "t": unix time}`) when it has seen the warm-up, and
again when it has seen BENCH_EXPECT records. No pipeline code runs here but `faust_settings`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import faust
import orjson

from stream_app.config import Settings, load_topology
from stream_app.worker.app import faust_settings

TAKE = 2000
WITHIN_S = 0.2


class _Worker(faust.Worker):
    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        # As the pipeline's worker does: Faust's spinner puts the root logger on DEBUG (~10% CPU).
        self.spinner = None


def _report(path: Path, seen: int) -> None:
    import time

    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps({"seen": seen, "t": time.time()}))
    tmp.replace(path)  # the harness never reads half a file


def build() -> faust.App:
    settings = Settings()
    topology = load_topology(settings.topology)
    app = faust.App(settings.app_id, **faust_settings(settings, topology))
    topic = app.topic(
        os.environ["BENCH_TOPIC"],
        key_serializer="raw",
        value_serializer="raw",
        partitions=int(os.environ["BENCH_PARTITIONS"]),
    )
    warmup, expect = int(os.environ["BENCH_WARMUP"]), int(os.environ["BENCH_EXPECT"])
    report = Path(os.environ["BENCH_REPORT"])

    async def count(stream: Any) -> None:
        seen, warm = 0, False
        async for batch in stream.take(TAKE, within=WITHIN_S):
            seen += len(batch)
            if not warm and seen >= warmup:
                warm = True
                _report(report, seen)
            if seen >= expect:
                _report(report, seen)

    app.agent(topic, name="count")(count)
    return app


def main() -> None:
    settings = Settings()
    _Worker(build(), loglevel=settings.log_level.upper()).execute_from_commandline()


if __name__ == "__main__":
    main()
