"""`make bench`: every figure of issue 9 in one run, on one embedded broker and one generated input.

    python -m bench [--events 200000] [--runs 3] [--budget 450] [--quick] [--json PATH]
                    [--profile PATH] [--populations 10000,100000,1000000]
                    [--latency-rate N] [--latency-seconds 30] [--skip latency,...]

Rows, in this order: the pure core in-process and its per-event cost at growing populations (no
broker; the machine is quietest before the broker rows start), one worker's memory against the
number of people (once), then `runs` rounds of raw ceiling, Faust ceiling, pipeline on one worker
and on two (cold, then warm), interleaved so that noise hits every row alike, then the latency of
event-triggered actions in live traffic (`bench.latency`: half the known-people pipeline median,
and 5 events/s; its time is set aside from the budget first). The pipelines and the pure core get
what is left of `--budget` seconds: if they are too slow to take every event in it, they run on
the first N events and the table says so.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from rich.console import Console

from bench import latency, noise, rows, two_workers
from bench.core import core_rate, scale_costs
from bench.procstat import child_running, vm_kib
from bench.report import Results, memory_line, render
from bench.worker_memory import SHARE as worker_memory_share
from bench.worker_memory import worker_memory
from stream_app.io.broker import EmbeddedBroker, tansu_binary
from stream_app.sample import generate

LINES_PER_PERSON_DAY = 2.8
"""Lines `generate` writes per person for one day of the default mix (measured: 2,830 per 1,000)."""
CORE_SHARE = 0.12
"""Share of the budget for the pure-core row (the scale rows take what they take)."""
PROBE_SAFETY = 0.6
"""The first events of a day are cheaper than the rest (small states): plan on a slower rate."""
PIPELINE_OVERHEAD_S = 30.0
"""Worker start, warm-up and end-of-run markers of one pipeline run, beside its events."""
PROBE = 2000
SKEWED_SHARE = 0.25
"""A worker of two that read less of the input than this did not halve the other's work: say so."""
LATENCY_TRICKLE = 5.0
"""Events/s of the latency row's second case (the first: half the known-people pipeline rate)."""
LATENCY_WAIT_S = 15.0
"""The latency row waits this long for actions after a case's last trigger (not the lateness: at
5 minutes' lateness the two cases would take most of the budget to show nothing new)."""
LATENCY_OVERHEAD_S = 25.0
"""Worker start, warm-up and teardown of one latency case, beside its traffic and wait."""


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="generated input lines")
    parser.add_argument("--runs", type=int, default=3, help="runs of each row (medians)")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds the whole bench may take")
    parser.add_argument("--populations", default="10000,100000,1000000", help="people known, per-event cost")
    parser.add_argument("--sample-people", type=int, default=1500, help="people per per-event-cost pass")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20,000 events, 2 runs, up to 100k people")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--profile", type=Path, help="py-spy the worker during the last warm phase")
    parser.add_argument(
        "--skip", default="", help="rows to leave out: core,scale,memory,raw,faust,pipeline,two,latency"
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        help="events/s of the latency row's first case (default: half the known-people pipeline median)",
    )
    parser.add_argument("--latency-seconds", type=float, default=30.0, help="live traffic per latency case")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.runs, args.budget = 20_000, 2, 240.0
        args.populations, args.sample_people = "1000,10000,100000", 500
    return args


def distinct_people(lines: list[bytes], truth: dict[str, str]) -> list[int]:
    """For each prefix length n, the people among lines[:n] (cumulative, index n - 1)."""
    seen: set[str] = set()
    out = []
    for line in lines:
        try:
            person = truth.get(orjson.loads(line).get("event_id"))
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            person = None
        if person is not None:
            seen.add(person)
        out.append(len(seen))
    return out


def main(argv: list[str] | None = None) -> Results:
    args = parse(argv)
    console = Console(width=None if Console().is_terminal else 160)
    skip = set(filter(None, args.skip.split(",")))
    started = time.monotonic()
    # The latency row runs last, and its time is set aside from the start.
    reserved = 0.0 if "latency" in skip else 2 * (args.latency_seconds + LATENCY_WAIT_S + LATENCY_OVERHEAD_S)
    left = lambda: args.budget - reserved - (time.monotonic() - started)  # noqa: E731
    monitor = noise.NoiseMonitor()

    people = math.ceil(args.events / LINES_PER_PERSON_DAY * 1.05)
    day = generate(people=people, days=1, seed=args.seed)
    lines = day.lines[: args.events]
    cumulative = distinct_people(lines, day.truth)
    people_of: Callable[[list[bytes]], int] = lambda used: cumulative[len(used) - 1]  # noqa: E731
    results = Results()
    results.meta = {
        "title": f"{len(lines):,} events, {cumulative[-1]:,} people, {args.runs} runs",
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "events": len(lines),
        "people": cumulative[-1],
        "generate": {"people": people, "days": 1, "seed": args.seed},
        "runs": args.runs,
        "budget_s": args.budget,
    }
    console.print(
        f"[bold]input[/]: {results.meta['title']} (generate(people={people:,}, days=1, seed={args.seed}))"
    )

    # -- in-process rows first: no broker running yet ---------------------------------------------
    if "core" not in skip:
        probe = core_rate(lines[:PROBE])
        per_run = CORE_SHARE * args.budget / args.runs
        n_core = max(PROBE, min(len(lines), int(PROBE_SAFETY * probe.rate * per_run)))
        results.events["core"] = n_core
        results.rates["core"] = [core_rate(lines[:n_core]).rate for _ in range(args.runs)]
        if n_core < len(lines):
            results.notes.append(
                f"pure core on the first {n_core:,} events: all {len(lines):,} at {probe.rate:,.0f} ev/s "
                f"would not fit {per_run:.0f} s per run"
            )
        console.print(f"pure core: {results.med('core'):,.0f} ev/s  ({left():.0f} s of budget left)")
        monitor.sample()
    if "scale" not in skip:
        populations = [int(p) for p in args.populations.split(",") if p]
        results.scale = scale_costs(populations, args.sample_people, args.runs)
        for point in results.scale:
            console.print(
                f"per-event cost at {point['people']:,} people: {point['us_per_event']:.0f} µs "
                f"(prefill {point['prefill_s']:.0f} s)"
            )
        results.memory["core_bytes_per_person"] = results.scale[-1]["bytes_per_person"]
        results.memory["core_people"] = results.scale[-1]["people"]
        console.print(f"({left():.0f} s of budget left)")
        monitor.sample()

    # -- broker rows: worker memory once, then rounds of ceilings and pipelines, interleaved ----------
    with tempfile.TemporaryDirectory(prefix="stream-app-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with EmbeddedBroker(log_path=tmp / "broker.log") as broker:
            broker_pid = child_running(tansu_binary())
            if "memory" not in skip:
                curve = worker_memory(
                    broker.url, broker.bootstrap, tmp, lines, cumulative, worker_memory_share * args.budget
                )
                results.memory_curve = curve.to_json()
                console.print(
                    f"worker memory: {memory_line(results.memory_curve)} ({left():.0f} s of budget left)"
                )
                monitor.sample()
            state, state_people = 0.0, 0
            n_pipeline = len(lines)
            pipelines = [row for row in ("pipeline", "two") if row not in skip]
            for run in range(args.runs):
                round_started = time.monotonic()
                if "raw" not in skip:
                    raw = rows.raw_ceiling(broker.bootstrap, lines)
                    results.rates.setdefault("raw", []).append(raw.rate)
                    results.events["raw"] = raw.events
                if "faust" not in skip:
                    fc = rows.faust_ceiling(broker.url, broker.bootstrap, tmp, lines)
                    results.add_run("faust", fc)
                monitor.sample()
                ceilings_s = time.monotonic() - round_started
                plan = None
                if run == 0 and pipelines:
                    # The first pipeline row of the first round probes the rate of new people and
                    # takes what fits: every pipeline row of every round, two phases each, at that
                    # rate (two workers planned as no faster than one).
                    overhead = PIPELINE_OVERHEAD_S + (two_workers.OVERHEAD_S if "two" in pipelines else 0.0)

                    def plan(rate: float, _ceilings: float = ceilings_s, _overhead: float = overhead) -> int:
                        per_run = (left() - (args.runs - 1) * _ceilings) / args.runs
                        spare = max(0.0, per_run - _overhead)
                        return int(PROBE_SAFETY * rate * spare / (2 * len(pipelines)))

                if "pipeline" in pipelines:
                    last = run == args.runs - 1
                    result = rows.pipeline(
                        broker.url,
                        broker.bootstrap,
                        tmp,
                        lines[:n_pipeline],
                        people_of,
                        plan,
                        profile=args.profile if last else None,
                    )
                    plan = None
                    n_pipeline = result.cold.events + rows.WARMUP
                    results.add_run("cold", result.cold)
                    results.add_run("warm", result.warm)
                    state, state_people = result.state_bytes_per_person, result.people
                    console.print(
                        f"run {run + 1}: pipeline cold {result.cold.rate:,.0f} ev/s, "
                        f"warm {result.warm.rate:,.0f} ev/s on {result.cold.events:,} events "
                        f"({left():.0f} s of budget left)"
                    )
                    monitor.sample()
                if "two" in pipelines:
                    two = two_workers.two_workers(broker.url, broker.bootstrap, tmp, lines[:n_pipeline], plan)
                    n_pipeline = two.events
                    state_people = people_of(lines[:n_pipeline])
                    results.add_run("two_cold", two.cold)
                    results.add_run("two_warm", two.warm)
                    results.shares.append(two.shares)
                    console.print(
                        f"run {run + 1}: two workers cold {two.cold.rate:,.0f} ev/s, "
                        f"warm {two.warm.rate:,.0f} ev/s on {two.cold.events:,} events, input shares "
                        + "/".join(f"{share:.0%}" for share in two.shares)
                        + f" ({left():.0f} s of budget left)"
                    )
                monitor.sample()
            for n, shares in enumerate(results.shares):
                if min(shares) < SKEWED_SHARE:
                    results.notes.append(
                        f"two workers, run {n + 1}: one worker read {min(shares):.0%} of the input "
                        "(keyless records go to partitions in batches): that run's rate is nearer one "
                        "worker's"
                    )
            if n_pipeline < len(lines) and pipelines:
                results.notes.append(
                    f"pipeline rows on the first {n_pipeline:,} events, {state_people:,} people "
                    f"(what fitted the budget at the rate of a {rows.PIPELINE_PROBE:,}-event probe)"
                )
            if "latency" not in skip:
                reserved = 0.0
                latency_row(args, results, broker, tmp, console)
                monitor.sample()
            broker_peak = vm_kib(broker_pid) if broker_pid else 0
            measured = monitor.finish()
    results.memory.update(
        worker_mib=max(results.peaks.get("cold", 0.0), results.peaks.get("warm", 0.0)),
        faust_worker_mib=results.peaks.get("faust", 0.0),
        broker_mib=broker_peak / 1024,
        state_bytes_per_person=state,
        people=state_people,
    )
    ceilings = {
        name: results.rates[row] for name, row in (("raw", "raw"), ("Faust", "faust")) if row in results.rates
    }
    results.warnings = noise.warnings(ceilings, measured)
    results.meta.update(
        wall_s=round(measured.wall_s, 1),
        load_mean=round(measured.load_mean, 2),
        own_cores=round(measured.own_cores, 2),
        others_cores=round(measured.others_cores, 2),
    )
    results.notes.append(
        f"run took {measured.wall_s:.0f} s; load average {measured.load_mean:.1f}; this bench used "
        f"{measured.own_cores:.2f} cores, other processes {measured.others_cores:.2f} of {measured.cores}"
    )
    if args.profile is not None and "pipeline" not in skip:
        from bench.profile import summarize

        results.notes.append(f"py-spy profile of the last warm phase: {args.profile}")
        console.print(summarize(args.profile))
    render(results, console)
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(results.to_json(), option=orjson.OPT_INDENT_2))
    return results


def latency_row(
    args: argparse.Namespace, results: Results, broker: EmbeddedBroker, tmp: Path, console: Console
) -> None:
    """`bench.latency` at half the known-people pipeline median (or `--latency-rate`) and at
    `LATENCY_TRICKLE` events/s, one run each, on the topology as it is."""
    half = args.latency_rate or results.med("warm") / 2
    cases = [(f"{LATENCY_TRICKLE:g} ev/s", LATENCY_TRICKLE)]
    if half:
        source = "--latency-rate" if args.latency_rate else "half the known-people pipeline median"
        cases.insert(0, (f"{half:,.0f} ev/s ({source})", half))
    else:
        results.notes.append(
            "latency at half the pipeline's rate not measured: no pipeline row, no --latency-rate"
        )
    for label, rate in cases:
        case = latency.run_case(
            broker.url, broker.bootstrap, tmp, rate, args.latency_seconds, wait_s=LATENCY_WAIT_S
        )
        results.latency[label] = case.to_json()
        overall = case.overall()
        q = latency.quantiles(overall.latencies_ms)
        console.print(
            f"latency {label}: {overall.received}/{overall.sent} actions, "
            + (f"p50 {q['p50'] / 1000:.3f} s, p99 {q['p99'] / 1000:.3f} s" if q else "none arrived")
            + f" (allowed_lateness {case.lateness}, waited {case.waited_s:.0f} s)"
        )
    lateness = {c["allowed_lateness"] for c in results.latency.values()}
    if any(latency.duration_ms(x) / 1000 >= LATENCY_WAIT_S for x in lateness):
        results.notes.append(
            f"latency row: allowed_lateness {'/'.join(sorted(lateness))} is longer than the row's "
            f"{LATENCY_WAIT_S:.0f} s wait: actions held for it count as missing "
            "(`python -m bench.latency --wait` waits longer)"
        )


if __name__ == "__main__":
    main()
