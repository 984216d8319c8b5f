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
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def med(self, row: str) -> float:
        return median(self.rates.get(row, []))

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
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "rates": self.rates,
            "medians": {row: self.med(row) for row in self.rates},
            "events": self.events,
            "scale": self.scale,
            "memory": self.memory,
            "targets": self.targets(),
            "notes": self.notes,
            "warnings": self.warnings,
        }


def _met(value: float | None, bar: float) -> bool | None:
    return None if value is None else value >= bar


def _mark(met: bool | None) -> str:
    return {True: "[green]met[/]", False: "[red]not met[/]", None: "-"}[met]


def _runs(values: list[float]) -> str:
    return " ".join(f"{v:,.0f}" for v in values)


def render(results: Results, console: Console | None = None) -> None:
    console = console or Console(width=None if Console().is_terminal else 140)
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
        ("target", "left"),
        ("", "left"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    labels = {
        "raw": "raw ceiling (confluent-kafka, orjson)",
        "faust": "Faust ceiling (take(2000), count)",
        "cold": "pipeline, new people (linker)",
        "warm": "pipeline, known people (fast path)",
        "core": "pure core in-process",
    }
    for row, label in labels.items():
        if row not in results.rates:
            continue
        value = results.med(row)
        target = targets.get(row)
        vs_raw = f"{value / raw:.3f}" if raw and row != "raw" else ""
        vs_faust = f"{value / faust:.3f}" if faust and row not in ("raw", "faust") else ""
        table.add_row(
            label,
            f"{results.events.get(row, 0):,}",
            f"{value:,.0f}",
            _runs(results.rates[row]),
            vs_raw,
            vs_faust,
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
            flat["bar"] if flat else "",
            _mark(flat["met"]) if flat else "",
        )
    console.print(table)
    m = results.memory
    if m:
        console.print(
            "peak RSS (VmHWM): pipeline worker {w:,.0f} MiB, Faust-ceiling worker {f:,.0f} MiB, "
            "broker {b:,.0f} MiB (whole bench); pipeline state on disk {s:,.0f} B/person "
            "({p:,.0f} people); in-memory core state {c:,.0f} B/person at {cp:,.0f} people".format(
                w=m.get("worker_mib", 0),
                f=m.get("faust_worker_mib", 0),
                b=m.get("broker_mib", 0),
                s=m.get("state_bytes_per_person", 0),
                p=m.get("people", 0),
                c=m.get("core_bytes_per_person", 0),
                cp=m.get("core_people", 0),
            )
        )
    for note in results.notes:
        console.print(f"note: {note}")
    for warning in results.warnings:
        console.print(f"[bold yellow]WARNING: {warning} — do not trust these medians[/]")
