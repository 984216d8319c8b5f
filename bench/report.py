"""The one table `make bench` prints, the targets beside the figures, and the JSON it can write."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

TARGET_WARM = 0.5
"""Pipeline, known people: at least this share of the Faust ceiling of the same run."""
TARGET_COLD = 0.25
"""Pipeline, new people (through the linker)."""
TARGET_CORE = 50_000
"""Pure core in-process, events/s."""
TARGET_FLAT = 1.3
"""Per-event cost at the largest population within this factor of the smallest."""
TARGET_LATENCY_S = 1.0
"""Event-triggered actions, live traffic: p99 from the trigger's input timestamp to the action's
arrival at a consumer outside the worker, every trigger answered (`bench.latency`)."""


ONE_WORKER = {"two_cold": "cold", "two_warm": "warm"}
"""Two-worker row -> the one-worker row it is compared with."""


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


@dataclass
class Results:
    """Everything measured, as plain data (what `--json` writes)."""

    meta: dict[str, Any] = field(default_factory=dict)
    rates: dict[str, list[float]] = field(default_factory=dict)
    """Row -> events/s of each run: raw, faust, cold, warm, core."""
    events: dict[str, int] = field(default_factory=dict)
    """Row -> events per run."""
    scale: list[dict[str, float]] = field(default_factory=list)
    """Per population: people, us_per_event (median), runs, bytes_per_person (in-memory)."""
    memory: dict[str, float] = field(default_factory=dict)
    """Peak RSS in MiB (worker, faust_worker, broker) and state_bytes_per_person."""
    peaks: dict[str, float] = field(default_factory=dict)
    """Pipeline row -> the worker's peak RSS (VmHWM) during that phase in MiB, the largest over runs
    and, for two workers, over both."""
    worker_peaks: dict[str, list[list[float]]] = field(default_factory=dict)
    """Pipeline row -> per run, each worker's peak RSS in MiB."""
    shares: list[list[float]] = field(default_factory=list)
    """Two workers: per run, each worker's share of the input messages."""
    memory_curve: dict[str, Any] = field(default_factory=dict)
    """`bench.worker_memory`: one worker's RSS and state at N1 and N2 people (`MemoryCurve.to_json`)."""
    latency: dict[str, dict[str, Any]] = field(default_factory=dict)
    """`bench.latency` case label -> `Case.to_json()` (live traffic, event-triggered actions)."""
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def med(self, row: str) -> float:
        return median(self.rates.get(row, []))

    def add_run(self, row: str, timed: Any) -> None:
        """One run of a pipeline row (a `rows.Timed`): its rate, events and workers' peak RSS."""
        self.rates.setdefault(row, []).append(timed.rate)
        self.events[row] = timed.events
        peaks = [kib / 1024 for kib in (timed.peaks_kib or [timed.peak_rss_kib])]
        self.worker_peaks.setdefault(row, []).append(peaks)
        self.peaks[row] = max([self.peaks.get(row, 0.0), *peaks])

    def vs_one_worker(self, row: str) -> float | None:
        """A two-worker row's median over the one-worker row's (same phase, same events)."""
        one = self.med(ONE_WORKER.get(row, ""))
        return self.med(row) / one if one and self.med(row) else None

    def targets(self) -> dict[str, dict[str, Any]]:
        """Each target: the figure, the bar and whether it was met (None: not measured)."""
        faust = self.med("faust")
        out: dict[str, dict[str, Any]] = {}
        for row, share in (("warm", TARGET_WARM), ("cold", TARGET_COLD)):
            value = self.med(row) / faust if faust and self.med(row) else None
            out[row] = {"value": value, "bar": f">= {share}x Faust", "met": _met(value, share)}
        core = self.med("core") or None
        out["core"] = {"value": core, "bar": f">= {TARGET_CORE:,} ev/s", "met": _met(core, TARGET_CORE)}
        if len(self.scale) >= 2:
            flat = self.scale[-1]["us_per_event"] / self.scale[0]["us_per_event"]
            bar = f"<= {TARGET_FLAT}x cost at {self.scale[0]['people']:,.0f}"
            out["flat"] = {"value": flat, "bar": bar, "met": flat <= TARGET_FLAT}
        for label, case in self.latency.items():
            out[f"latency {label}"] = latency_target(case)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "rates": self.rates,
            "medians": {row: self.med(row) for row in self.rates},
            "events": self.events,
            "scale": self.scale,
            "memory": self.memory,
            "peak_rss_mib": self.peaks,
            "worker_peak_rss_mib": self.worker_peaks,
            "two_workers": {
                "input_shares": self.shares,
                "vs_one_worker": {row: self.vs_one_worker(row) for row in ONE_WORKER},
            },
            "worker_memory": self.memory_curve,
            "latency": self.latency,
            "targets": self.targets(),
            "notes": self.notes,
            "warnings": self.warnings,
        }


def latency_target(case: dict[str, Any]) -> dict[str, Any]:
    """p99 in seconds against `TARGET_LATENCY_S`; a trigger with no action fails it, whatever the
    p99 of those that came (none came: value None, not met)."""
    overall = case["rules"].get("all", {})
    q = overall.get("latency")
    value = q["p99"] / 1000 if q else None
    met = value is not None and value <= TARGET_LATENCY_S and not overall.get("missing")
    return {"value": value, "bar": f"p99 <= {TARGET_LATENCY_S:g} s", "met": met}


def _met(value: float | None, bar: float) -> bool | None:
    return None if value is None else value >= bar


def _mark(met: bool | None) -> str:
    return {True: "[green]met[/]", False: "[red]not met[/]", None: "-"}[met]


def _runs(values: list[float]) -> str:
    return " ".join(f"{v:,.0f}" for v in values)


def render(results: Results, console: Console | None = None) -> None:
    console = console or Console(width=None if Console().is_terminal else 160)
    raw, faust = results.med("raw"), results.med("faust")
    targets = results.targets()
    table = Table(title=f"stream_app bench — {results.meta.get('title', '')}", show_lines=False)
    for name, justify in [
        ("row", "left"),
        ("events", "right"),
        ("median ev/s", "right"),
        ("runs", "right"),
        ("x raw", "right"),
        ("x Faust", "right"),
        ("x 1 wkr", "right"),
        ("peak RSS", "right"),
        ("target", "left"),
        ("", "left"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    labels = {
        "raw": "raw ceiling (confluent-kafka, orjson)",
        "faust": "Faust ceiling (take(2000), count)",
        "cold": "pipeline, new people (linker)",
        "warm": "pipeline, known people (fast path)",
        "two_cold": "pipeline, two workers (new people)",
        "two_warm": "pipeline, two workers (known people)",
        "core": "pure core in-process",
    }
    for row, label in labels.items():
        if row not in results.rates:
            continue
        value = results.med(row)
        target = targets.get(row)
        vs_raw = f"{value / raw:.3f}" if raw and row != "raw" else ""
        vs_faust = f"{value / faust:.3f}" if faust and row not in ("raw", "faust") else ""
        vs_one = results.vs_one_worker(row)
        table.add_row(
            label,
            f"{results.events.get(row, 0):,}",
            f"{value:,.0f}",
            _runs(results.rates[row]),
            vs_raw,
            vs_faust,
            f"{vs_one:.2f}x" if vs_one else "",
            _peak(results, row),
            target["bar"] if target else "",
            _mark(target["met"]) if target else "",
        )
    for n, point in enumerate(results.scale):
        last = n == len(results.scale) - 1 and n > 0
        flat = targets.get("flat") if last else None
        table.add_row(
            f"core cost, {point['people']:,.0f} people known",
            f"{point['events']:,.0f}",
            f"{1e6 / point['us_per_event']:,.0f}",
            " ".join(f"{u:.0f}µs" for u in point["runs_us"]),
            "",
            f"{point['us_per_event'] / results.scale[0]['us_per_event']:.2f}x" if n else "1.00x",
            "",
            "",
            flat["bar"] if flat else "",
            _mark(flat["met"]) if flat else "",
        )
    console.print(table)
    if results.latency:
        console.print(latency_table(results))
    m = results.memory
    parts = [
        f"{label} {m[key]:,.0f} MiB"
        for label, key in (
            ("pipeline worker", "worker_mib"),
            ("Faust-ceiling worker", "faust_worker_mib"),
            ("broker", "broker_mib"),
        )
        if m.get(key)
    ]
    if parts:
        line = "peak RSS (VmHWM): " + ", ".join(parts) + " (whole bench)"
        if m.get("state_bytes_per_person"):
            line += (
                f"; pipeline state on disk {m.get('state_bytes_per_person', 0):,.0f} B/person "
                f"({m['people']:,.0f} people)"
            )
        if m.get("core_people"):
            line += (
                f"; in-memory core state {m.get('core_bytes_per_person', 0):,.0f} B/person at "
                f"{m['core_people']:,.0f} people"
            )
        console.print(line)
    if results.memory_curve:
        console.print(f"worker memory, one worker, new people: {memory_line(results.memory_curve)}")
    if results.shares:
        console.print(
            "two workers: input messages each read, per run: "
            + ", ".join("/".join(f"{share:.0%}" for share in run) for run in results.shares)
        )
    for note in results.notes:
        console.print(f"note: {note}")
    for warning in results.warnings:
        console.print(f"[bold yellow]WARNING: {warning} — do not trust these medians[/]")


def _held(suppressed: dict[str, int]) -> str:
    """Triggers decided but suppressed (a rule's holdout, by design), beside the actions."""
    return "".join(f" +{n:,} {reason}" for reason, n in sorted(suppressed.items()))


def _peak(results: Results, row: str) -> str:
    """The row's worker peak RSS: one figure, or each worker's (largest run) for several."""
    runs = results.worker_peaks.get(row)
    if not runs:
        return ""
    widest = max(runs, key=max)
    return "+".join(f"{mib:,.0f}" for mib in widest) + " MiB"


def memory_line(curve: dict[str, Any]) -> str:
    """`bench.worker_memory`'s points and growth per person, on one line."""
    points = curve.get("points", [])
    if not points:
        return "not measured"
    shown = ", ".join(
        f"{p['people']:,} people {p['rss_kib'] / 1024:,.0f} MiB (peak {p['hwm_kib'] / 1024:,.0f})"
        for p in points
    )
    growth = curve.get("growth") or {}
    if not growth:
        return f"RSS at {shown}: one point, no growth figure"
    return (
        f"RSS at {shown}: {growth['rss_bytes_per_person']:+,.0f} B per person, while state on disk "
        f"grew {growth['state_bytes_per_person']:,.0f} B and RocksDB write-ahead logs "
        f"{growth['wal_bytes_per_person']:,.0f} B per person"
    )


def latency_table(results: Results) -> Table:
    """One line per `bench.latency` case: live traffic, event-triggered actions, seconds from the
    trigger's input timestamp to the action's arrival at a consumer outside the worker."""
    table = Table(title="latency, event-triggered actions (welcome, VIP store visit, browse interest)")
    for name in ("case", "live ev/s", "lateness", "triggers", "actions", "missing", "p50 s", "p95 s"):
        table.add_column(name, justify="left" if name == "case" else "right")
    for name in ("p99 s", "max s", "target", ""):
        table.add_column(name, justify="left" if name in ("target", "") else "right")
    for label, case in results.latency.items():
        overall = case["rules"].get("all", {})
        q = overall.get("latency")
        target = latency_target(case)

        def s(key: str, q: dict[str, float] | None = q) -> str:
            return f"{q[key] / 1000:.3f}" if q else "-"

        table.add_row(
            label,
            f"{case['sent_rate']:,.0f}",
            case["allowed_lateness"],
            f"{overall.get('sent', 0):,}",
            f"{overall.get('received', 0):,}" + _held(overall.get("suppressed") or {}),
            f"{overall.get('missing', 0):,} (waited {case['waited_s']:.0f} s)",
            s("p50"),
            s("p95"),
            s("p99"),
            s("max"),
            target["bar"],
            _mark(target["met"]),
        )
    return table
