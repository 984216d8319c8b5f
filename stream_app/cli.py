"""`stream-app`: run the job, the embedded broker, a worker; produce, consume, validate, generate.

stream-app run --events data/sample-day.jsonl --once --dump-dir out/
stream-app validate topology.yaml
"""

# Errors are one line each (`error <what>: <why>`), with no traceback, and exit non-zero: 2 for
# what the user gave (settings, files, URLs, topology), 1 for what went wrong (broker, worker).
# Tables go to a terminal; piped, or asked with --json, the same data is JSON on stdout.

from __future__ import annotations

import importlib.metadata
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import click
import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperArgument, TyperCommand, TyperGroup

from stream_app.config import Settings, Topology, TopologyError, load_topology
from stream_app.config.settings import SettingsError, load_settings
from stream_app.progress import (
    RATE_WINDOW_S,
    STAGES,
    Snapshot,
    StageProgress,
    actions_by_rule,
    parse_metrics,
    stage_progress,
)

if TYPE_CHECKING:
    from stream_app.runner import LocalRun


class _PlainHelp:
    """--help without typer's `<str>`/`<bool>` type column: options name their value (URL, FILE)
    with a metavar, flags and arguments show none."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params: list[click.Parameter] = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if isinstance(param, TyperArgument):
                param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
            elif getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_PlainHelp, TyperCommand):  # type: ignore[misc]
    pass


class _Group(_PlainHelp, TyperGroup):  # type: ignore[misc]
    pass


app = typer.Typer(
    no_args_is_help=True, add_completion=False, help=__doc__, cls=_Group, pretty_exceptions_enable=False
)
command = app.command
console = Console(stderr=True, soft_wrap=True)  # a line is a line, also in a log file

_BROKER_HELP = "Kafka broker, e.g. kafka://host:9092 (default: STREAM_APP_BROKER)"
BrokerOpt = Annotated[str | None, typer.Option("--broker", metavar="URL", help=f"{_BROKER_HELP}; required.")]
RunBrokerOpt = Annotated[
    str | None,
    typer.Option("--broker", metavar="URL", help=f"{_BROKER_HELP}; none: an embedded broker for this run."),
]
TopologyOpt = Annotated[
    Path | None,
    typer.Option("--topology", metavar="FILE", help="Default: STREAM_APP_TOPOLOGY, topology.yaml"),
]

LogFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        metavar="FORMAT",
        help="Worker log lines: text or json (one object per line). Default: STREAM_APP_LOG_FORMAT, text",
    ),
]


def _version(value: bool) -> None:
    if value:
        print(f"stream-app {importlib.metadata.version('stream_app')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    pass


def _fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]error[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _terminal() -> bool:
    """Whether stdout is a terminal (tables) or a pipe or file (JSON)."""
    return sys.stdout.isatty()


def _settings(**overrides: Any) -> Settings:
    """The settings, or one `error SETTING: reason` line per problem and exit 2."""
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        for problem in exc.problems:
            for name, value in overrides.items():  # given as an option, not from the environment
                if value is not None and problem.startswith(f"STREAM_APP_{name.upper()}:"):
                    problem = f"--{name.replace('_', '-')}:" + problem.split(":", 1)[1]
            console.print(f"[red]error[/red] {escape(problem)}", highlight=False)
        raise typer.Exit(2) from None


@contextmanager
def _broker_errors() -> Iterator[None]:
    """Broker trouble as one line and exit 1, never a librdkafka traceback."""
    from confluent_kafka import KafkaException

    from stream_app.io.broker import BrokerError
    from stream_app.io.kafka import KafkaToolError

    try:
        yield
    except (KafkaToolError, BrokerError) as exc:
        _fail(str(exc))
    except KafkaException as exc:
        err = exc.args[0] if exc.args else exc
        _fail(f"Kafka: {err.str() if hasattr(err, 'str') else err}")


def _read_lines(path: Path, option: str) -> list[bytes]:
    from stream_app.runner import read_event_lines

    try:
        return read_event_lines(path)
    except OSError as exc:
        _fail(f"{option} {path}: {exc.strerror or exc}", 2)


def _warn_development_key(settings: Settings) -> None:
    if settings.pii_key_bytes()[1]:
        console.print(
            "[yellow]warning[/yellow] STREAM_APP_PII_KEY is not set: phones and emails are hashed with "
            "the PUBLIC development key, so anyone can reverse the hashes. Set a secret key.",
            highlight=False,
        )


TOPOLOGY_REFUSED = 2
"""Exit code of every command given a topology file that does not validate."""


def _refuse(exc: TopologyError) -> typer.Exit:
    for problem in exc.problems:  # one line each, however wide: `file: place: reason`, for grep
        console.print(f"[red]error[/red] {problem}", highlight=False, soft_wrap=True)
    return typer.Exit(TOPOLOGY_REFUSED)


def _topology(settings: Settings) -> Topology:
    """The validated topology, or the problems printed and exit 2 (a worker does not start)."""
    try:
        return load_topology(settings.topology)
    except TopologyError as exc:
        raise _refuse(exc) from None


def _need_broker(settings: Settings) -> str:
    if settings.broker is None:
        _fail("no broker: pass --broker URL, set STREAM_APP_BROKER, or start one with `stream-app broker`", 2)
    from stream_app.io.urls import bootstrap_servers

    return bootstrap_servers(settings.broker)


def _reachable_broker(settings: Settings) -> str:
    """The bootstrap list of a broker that answers, or one error line and exit 1."""
    from stream_app.io.kafka import check_broker

    bootstrap = _need_broker(settings)
    with _broker_errors():
        check_broker(bootstrap, settings.kafka)
    return bootstrap


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
    )


def _produce_with_progress(lines: list[bytes], send: Any, label: str) -> int:
    started = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task(label, total=len(lines), rate="")

        def on_sent(n: int) -> None:
            if n % 200 == 0 or n == len(lines):
                rate = n / max(time.perf_counter() - started, 1e-9)
                progress.update(task, completed=n, rate=f"{rate:,.0f} ev/s")

        return int(send(lines, on_sent))


@command(cls=_Command)
def run(
    broker: RunBrokerOpt = None,
    topology: TopologyOpt = None,
    events: Annotated[
        Path | None, typer.Option(metavar="FILE", help="JSONL file of touchpoint events to stream in")
    ] = None,
    once: Annotated[bool, typer.Option(help="Process the file, print, exit (instead of running on)")] = False,
    dump_dir: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Write every output topic to DIR/<topic>.jsonl")
    ] = None,
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Seconds to wait for the input to be processed")
    ] = 600.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Summary as JSON on stdout (also when stdout is not a terminal)")
    ] = False,
    log_format: LogFormatOpt = None,
) -> None:
    """Run the main job: broker (embedded unless given), a worker, and optionally a file of events."""
    from stream_app.runner import LocalRun, RunError, dump

    settings = _settings(broker=broker, topology=topology, log_format=log_format)
    topo = _topology(settings)
    if once and events is None:
        _fail("--once needs --events FILE", 2)
    lines = _read_lines(events, "--events") if events else []
    if settings.broker is not None:
        _reachable_broker(settings)
    _warn_development_key(settings)
    # Ctrl-C and SIGTERM both stop everything in order, also when started from a script
    # (a non-interactive shell starts background jobs with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with _broker_errors(), LocalRun(settings, topo) as local:
            where = "embedded broker" if settings.broker is None else "broker"
            console.print(f"[green]●[/green] {where} {local.url}   worker log {local.worker_log}")
            web = f"http://{settings.web_host}:{local.web_port}"
            console.print(f"[green]●[/green] web {web} (--web {web}; metrics at /metrics)", highlight=False)
            if lines:
                _produce_with_progress(lines, local.stream_events, f"streaming {events.name}")  # type: ignore[union-attr]
                with _RunProgress(local, len(lines)) as shown:
                    # A file is a finished stretch of time: its windows and deferrals resolve now.
                    local.finish_input(close_event_time=True, timeout=timeout, on_wait=shown.poll)
                    shown.finish()
                with console.status("reading the output topics"):
                    outputs = local.read_outputs()
                _summary(topo, len(lines), outputs, as_json or not _terminal(), shown)
                if dump_dir is not None:
                    dump(outputs, dump_dir)
                    console.print(f"wrote {len(outputs)} topics to {dump_dir}/")
            if once:
                return
            console.print(
                f"running on for live traffic: events produced to {topo.topics.touchpoints.name} at "
                f"{local.bootstrap} with event time now are acted on within about a second "
                "(allowed_lateness plus the pipeline)",
                highlight=False,
                soft_wrap=True,
            )
            console.print("running: Ctrl-C stops the worker and the broker")
            while True:
                local.check_alive()
                time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopped")
    except RunError as exc:  # a worker's or the broker's death: the message carries its log's tail
        _fail(str(exc))


class _RunProgress:
    """While a bounded run is processed: per stage, the input lines it is done with, their rate
    and an ETA (`stream_app.progress`, from the worker's /metrics), as live bars on a terminal,
    else as a line every `LOG_EVERY_S`. Finished only when the run's end markers are reported."""

    SCRAPE_EVERY_S = 1.0
    LOG_EVERY_S = 15.0

    def __init__(self, local: LocalRun, total: int):
        self.local, self.total = local, total
        self.snapshots: list[Snapshot] = []
        self.started = time.monotonic()
        self.seconds = 0.0
        self.stages: list[StageProgress] = []
        self._scraped_at = self._logged_at = -1e9
        self.live = console.is_terminal
        self.bars = Progress(
            TextColumn("[bold]{task.description:<7}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>10}"),
            TextColumn("{task.fields[eta]}"),
            console=console,
            disable=not self.live,
        )
        self.tasks = {stage: self.bars.add_task(stage, total=total, rate="", eta="") for stage in STAGES}

    def __enter__(self) -> _RunProgress:
        console.print(f"processing {self.total:,} lines (per stage: lines done, rate, time left)")
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def poll(self, finished: bool = False) -> None:
        now = time.monotonic()
        if now - self._scraped_at < self.SCRAPE_EVERY_S and not finished:
            return
        self._scraped_at = now
        text = self.local.scrape_metrics()
        if text is not None:
            with suppress(ValueError):  # a scrape cut short: the next one counts
                self.snapshots.append(Snapshot(now, parse_metrics(text)))
            keep = RATE_WINDOW_S + 2 * self.SCRAPE_EVERY_S  # what the rate is taken over, and a little
            self.snapshots = [s for s in self.snapshots if s.at >= now - keep]
        self.stages = stage_progress(self.snapshots, self.total, finished)
        self._show(now, finished)

    def finish(self) -> None:
        """The end markers are reported: one last scrape, every stage finished."""
        self.seconds = time.monotonic() - self.started
        self.poll(finished=True)

    def _show(self, now: float, finished: bool) -> None:
        for p in self.stages:
            rate = "" if p.rate is None or p.done >= p.total else f"{p.rate:,.0f}/s"
            if p.finished:
                eta = "[green]done[/green]"
            elif p.done >= p.total:
                eta = "finishing" if p.stage == "people" else "handled"
            else:
                eta = "" if p.eta is None else f"{_duration(p.eta)} left"
            self.bars.update(self.tasks[p.stage], completed=p.done, rate=rate, eta=eta)
        if not self.live and (finished or now - self._logged_at >= self.LOG_EVERY_S):
            self._logged_at = now
            parts = [f"{p.stage} {p.done:,}/{p.total:,}" for p in self.stages]
            when = f"done in {_duration(self.seconds)}" if finished else f"{_duration(now - self.started)}"
            console.print(f"processing ({when}): " + ", ".join(parts), highlight=False)


def _duration(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"


def _summary(
    topo: Topology, produced: int, outputs: dict[str, list[Any]], as_json: bool, shown: _RunProgress
) -> None:
    dlq = outputs.get(topo.topics.dlq.name, [])
    reasons: dict[str, int] = {}
    for record in dlq:
        reason = orjson.loads(record.value).get("reason", "?")
        reasons[reason] = reasons.get(reason, 0) + 1
    t = topo.topics
    kinds = {
        name: "coupon" if spec.coupon is not None else "guide_alert" for name, spec in topo.rules.items()
    }
    emitted = [r.value for topic in (t.coupons, t.guide_alerts) for r in outputs.get(topic.name, [])]
    suppressed = [r.value for r in outputs.get(t.actions_suppressed.name, [])]
    actions = actions_by_rule(kinds, emitted, suppressed)
    audience_sizes = _audience_sizes(topo, outputs)
    if as_json:
        summary = {
            "messages_in": produced,
            "records_out": {topic: len(records) for topic, records in outputs.items()},
            "dlq_reasons": dict(sorted(reasons.items())),
            "processed": {p.stage: p.done for p in shown.stages},
            "processing_seconds": round(shown.seconds, 3),
            "actions": {rule: counts.to_json() for rule, counts in actions.items()},
            "effect": {rule: e.to_json() for rule, e in _effect_table(topo, outputs).items()},
            "audiences": audience_sizes,
        }
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    table = Table(title=f"{produced} messages in → what came out")
    table.add_column("topic")
    table.add_column("records", justify="right")
    for topic, records in outputs.items():
        table.add_row(topic, str(len(records)))
    console.print(table)
    if dlq:
        console.print("DLQ reasons: " + ", ".join(f"{r} {n}" for r, n in sorted(reasons.items())))
        console.print("DLQ example:", orjson.loads(dlq[0].value))
    for topic, records in outputs.items():
        if records and topic != topo.topics.dlq.name:
            console.print(f"{topic} example:", orjson.loads(records[0].value or b"null"))
    rules = Table(title="actions by rule (records on the output topics)")
    for column in ("rule", "action", "emitted", "suppressed", "suppressed by reason"):
        rules.add_column(column, justify="right" if column in ("emitted", "suppressed") else "left")
    for rule, counts in actions.items():
        by_reason = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.suppressed.items()))
        total = sum(counts.suppressed.values())
        rules.add_row(rule, counts.action, str(counts.emitted), str(total), by_reason)
    console.print(rules)
    _print_effect(_effect_table(topo, outputs), Console())
    _print_audience_sizes(audience_sizes)
    console.print(f"processed {produced:,} lines in {_duration(shown.seconds)}", highlight=False)


def _audience_sizes(topo: Topology, outputs: dict[str, list[Any]]) -> dict[str, int]:
    """Members per audience at the end, from the compacted `audience-members` as read."""
    from stream_app.audiences.report import current_members, sizes

    rows = [(r.key, r.value) for r in outputs.get(topo.topics.audience_members.name, [])]
    return sizes(current_members(rows), topo.audiences)


def _print_audience_sizes(audience_sizes: dict[str, int]) -> None:
    table = Table(title="audience sizes at the end of event time (audience-members)")
    table.add_column("audience")
    table.add_column("members", justify="right")
    for name, size in audience_sizes.items():
        table.add_row(name, str(size))
    console.print(table)


audiences_app = typer.Typer(cls=_Group, no_args_is_help=False, add_completion=False)
app.add_typer(audiences_app, name="audiences")


@audiences_app.callback(invoke_without_command=True)
def audiences(
    ctx: typer.Context,
    broker: BrokerOpt = None,
    topology: TopologyOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON instead of tables (also when stdout is not a terminal)")
    ] = False,
) -> None:
    """Audience sizes now and enters and exits per hour of event time, read from the topics.

    `stream-app audiences export NAME` writes the members of one audience as JSONL."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"broker": broker, "topology": topology}
        return
    from stream_app.audiences.report import by_hour, current_members, sizes
    from stream_app.io.kafka import read_topics

    settings = _settings(broker=broker, topology=topology)
    topo = _topology(settings)
    bootstrap = _reachable_broker(settings)
    t = topo.topics
    with _broker_errors():
        found = read_topics(
            bootstrap, [t.audience_members.name, t.audience_changes.name], security=settings.kafka
        )
    members = current_members((r.key, r.value) for r in found[t.audience_members.name])
    now = sizes(members, topo.audiences)
    hours = by_hour(r.value for r in found[t.audience_changes.name])
    if as_json or not _terminal():
        data = {
            "sizes": now,
            "per_hour": [
                {"hour": hour, "audience": name, **counts} for (hour, name), counts in hours.items()
            ],
        }
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    out = Console()
    table = Table(title="audience sizes now")
    table.add_column("audience")
    table.add_column("members", justify="right")
    table.add_column("description")
    for name, size in now.items():
        spec = topo.audiences.get(name)
        table.add_row(name, str(size), spec.description if spec is not None else "")
    out.print(table)
    hourly = Table(title="enters and exits per hour of event time (UTC)")
    for column in ("hour", "audience", "enter", "exit"):
        hourly.add_column(column, justify="right" if column in ("enter", "exit") else "left")
    for (hour, name), counts in hours.items():
        hourly.add_row(hour, name, str(counts["enter"]), str(counts["exit"]))
    out.print(hourly)


@audiences_app.command("export", cls=_Command)
def audiences_export(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="An audience, or one sub-key's: category_interest\\[bags]")
    ],
    broker: BrokerOpt = None,
    topology: TopologyOpt = None,
) -> None:
    """The current members of NAME as JSONL on stdout, with hashed identifiers only (phones and
    emails as their HMAC hashes; other identifier types are left out)."""
    from stream_app.audiences.report import current_members, export_rows
    from stream_app.io.kafka import read_topics

    given = ctx.obj or {}
    settings = _settings(broker=broker or given.get("broker"), topology=topology or given.get("topology"))
    topo = _topology(settings)
    if name.partition("[")[0] not in topo.audiences:
        _fail(f"NAME {name!r}: no such audience (known: {', '.join(topo.audiences)})", 2)
    bootstrap = _reachable_broker(settings)
    members_topic, owners = topo.topics.audience_members.name, topo.internal_topics.identity_map.name
    with _broker_errors():
        found = read_topics(bootstrap, [members_topic, owners], security=settings.kafka)
    members = current_members((r.key, r.value) for r in found[members_topic])
    rows = export_rows(members, name, ((r.key, r.value) for r in found[owners]))
    for row in rows:
        sys.stdout.buffer.write(orjson.dumps(row) + b"\n")
    console.print(f"{len(rows)} members of {name}")


@command(cls=_Command)
def broker(
    port: Annotated[int, typer.Option(metavar="PORT", help="Port on 127.0.0.1 (default: a free one)")] = 0,
) -> None:
    """Run the embedded broker in the foreground and print its address."""
    from stream_app.io.broker import EmbeddedBroker

    settings = _settings()
    log_path = settings.data_dir / "broker.log"
    with _broker_errors(), EmbeddedBroker(log_path=log_path, port=port or None) as embedded:
        print(embedded.url, flush=True)
        console.print(f"bootstrap {embedded.bootstrap} (log {log_path}); Ctrl-C stops it")
        try:
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            while embedded.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


@command(cls=_Command)
def worker(broker: BrokerOpt = None, topology: TopologyOpt = None, log_format: LogFormatOpt = None) -> None:
    """Run one Faust worker of the topology (join more workers to scale out).

    A worker waits for its broker (it says so once, then every 30 s) instead of exiting."""
    from stream_app.worker.run import run_worker

    settings = _settings(broker=broker, topology=topology, log_format=log_format)
    topo = _topology(settings)
    _need_broker(settings)
    _warn_development_key(settings)
    run_worker(settings, topo)


@command(cls=_Command)
def produce(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="JSONL, one message a line")],
    broker: BrokerOpt = None,
    topic: Annotated[
        str | None, typer.Option(metavar="TOPIC", help="Default: the topology's input topic")
    ] = None,
) -> None:
    """Produce each line of a JSONL file as one message."""
    from stream_app.io.kafka import make_producer, produce_values, require_topic

    settings = _settings(broker=broker)
    lines = _read_lines(file, "FILE")
    bootstrap = _reachable_broker(settings)
    target = topic or _topology(settings).topics.touchpoints.name
    with _broker_errors():
        require_topic(bootstrap, target, settings.kafka)
        producer = make_producer(bootstrap, settings.kafka)
        started = time.perf_counter()
        count = _produce_with_progress(
            lines, lambda ls, cb: produce_values(producer, target, ls, cb), f"→ {target}"
        )
    console.print(f"{count} messages to {target} at {count / (time.perf_counter() - started):,.0f}/s")


@command(cls=_Command)
def consume(
    topic: Annotated[str, typer.Argument(metavar="TOPIC")],
    broker: BrokerOpt = None,
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest record")] = False,
    max_records: Annotated[
        int | None, typer.Option("--max", metavar="N", help="Stop after N records")
    ] = None,
    timeout: Annotated[
        float, typer.Option(metavar="SECONDS", help="Stop after SECONDS without a record")
    ] = 5.0,
) -> None:
    """Print a topic's records as JSON lines on stdout."""
    from stream_app.io.kafka import iter_topics

    settings = _settings(broker=broker)
    bootstrap = _reachable_broker(settings)
    count = 0
    with _broker_errors():
        for record in iter_topics(
            bootstrap,
            [topic],
            from_beginning=from_beginning,
            until_end=False,
            idle_timeout=timeout,
            security=settings.kafka,
        ):
            if record.is_control:
                continue
            sys.stdout.buffer.write((record.value or b"null") + b"\n")
            sys.stdout.flush()
            count += 1
            if max_records is not None and count >= max_records:
                break
    console.print(f"{count} records from {topic}")


WebOpt = Annotated[
    str | None,
    typer.Option(
        "--web",
        metavar="URL",
        help="A worker's web address, e.g. http://127.0.0.1:6066. Default: http://STREAM_APP_WEB_HOST:WEB_PORT",
    ),
]


@command(cls=_Command)
def graph(
    person: Annotated[
        str, typer.Argument(metavar="PERSON", help="one_id, type:value identifier, `hubs` or `stats`")
    ],
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="json or graphml (a person's graph; default json). hubs: a table on a terminal, else JSON",
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N", min=1, help="hubs: how many to list")] = 50,
    web: WebOpt = None,
    topology: TopologyOpt = None,
) -> None:
    """A person's identity graph, hub identifiers, or component sizes, from a running worker.

    `hubs` lists the identifiers whose links were refused, most people first; a people count
    marked `~` is an estimate (the count is exact up to 256 people per hub).
    """
    import networkx as nx

    from stream_app.identity.graph import graph_from_json

    if output_format not in (None, "json", "graphml"):
        _fail("--format is json or graphml", 2)
    settings = _settings(topology=topology)
    base = (web or f"http://{settings.web_host}:{settings.web_port}").rstrip("/")
    if person in ("hubs", "stats"):
        query = f"?limit={limit}" if person == "hubs" else ""
        data = _get_json(f"{base}/identity/{person}{query}")
        if person == "hubs" and output_format is None and _terminal():
            total = data.get("total", len(data["hubs"]))
            table = Table(
                title="identifiers whose links were refused",
                caption=f"{len(data['hubs'])} of {total} hubs"
                + (" (--limit for more)" if total > limit else ""),
            )
            for column in ("identifier", "people", "refused_links"):
                table.add_column(column)
            for row in data["hubs"]:
                people = ("~" if row.get("people_estimated") else "") + str(row["people"])
                table.add_row(row["identifier"], people, str(row["refused_links"]))
            Console().print(table)
            return
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    key = person if person.startswith("p_") else _identifier_key(person, _topology(settings), settings)
    data = _get_json(f"{base}/identity/graph/{urllib.parse.quote(key, safe='')}")
    if output_format == "graphml":
        nx.write_graphml(graph_from_json(data["graph"]), sys.stdout.buffer)
    else:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


@command(cls=_Command)
def profile(
    person: Annotated[
        str,
        typer.Argument(metavar="PERSON", help="one_id or type:value identifier, e.g. phone:13800138000"),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON instead of a table (also when stdout is not a terminal)")
    ] = False,
    web: WebOpt = None,
    topology: TopologyOpt = None,
) -> None:
    """A person's tags and identifiers, live from a running worker."""
    settings = _settings(topology=topology)
    base = (web or f"http://{settings.web_host}:{settings.web_port}").rstrip("/")
    key = person if person.startswith("p_") else _identifier_key(person, _topology(settings), settings)
    data = _get_json(f"{base}/profiles/{urllib.parse.quote(key, safe='')}")
    if as_json or not _terminal():
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    table = Table(title=f"{data['one_id']}  ({len(data['identifiers'])} identifiers)")
    table.add_column("tag")
    table.add_column("value")
    for name, value in data["tags"].items():
        table.add_row(name, orjson.dumps(value).decode() if isinstance(value, dict | list) else str(value))
    Console().print(table)
    Console().print("identifiers: " + ", ".join(data["identifiers"]), highlight=False)


def _identifier_key(person: str, topo: Topology, settings: Settings) -> str:
    """`phone:+86 138...` to the state key, normalised and hashed as ingest does it."""
    from stream_app.identity.model import identifier_key
    from stream_app.ingest import Ingestor, PiiHasher, normalize_identifier

    id_type, sep, raw = person.partition(":")
    if not sep:
        _fail("PERSON is a one_id (p_...) or type:value, e.g. member_id:M1", 2)
    key, _ = settings.pii_key_bytes()
    ingestor = Ingestor.from_topology(topo, PiiHasher(key, topo.identifiers.default_phone_region))
    value = normalize_identifier(id_type, raw, ingestor.rules)
    if value is None:
        _fail(f"{id_type} value is junk or invalid: it identifies nobody")
    return identifier_key(id_type, ingestor.hasher.protect(id_type, value))


def _get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        _fail(f"{exc.code} from {url}: {detail}")
    except urllib.error.URLError as exc:
        _fail(f"no worker answers at {url}: {exc.reason}")
    except ValueError as exc:  # not a URL at all
        _fail(f"--web {url}: {exc}", 2)


@command(cls=_Command)
def validate(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Default: topology.yaml")] = Path(
        "topology.yaml"
    ),
) -> None:
    """Check a topology file; exit 2 with file, place and reason for each problem."""
    try:
        topo = load_topology(file)
    except TopologyError as exc:
        raise _refuse(exc) from None
    console.print(f"[green]ok[/green] {file}: {len(topo.all_topics())} topics")


@command(cls=_Command)
def generate(
    people: Annotated[int, typer.Option(metavar="N", help="How many shoppers")] = 1000,
    days: Annotated[int, typer.Option(metavar="N", help="How many days of activity")] = 1,
    seed: Annotated[int, typer.Option(metavar="N", help="Random seed (same seed, same file)")] = 7,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", metavar="FILE", help="Default: stdout")
    ] = None,
    truth: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Write event_id → true person as JSONL")
    ] = None,
) -> None:
    """Generate synthetic retail touchpoints (with malformed lines, junk ids and resends)."""
    from stream_app.sample import generate as make

    day = make(people=people, days=days, seed=seed)
    data = b"".join(line + b"\n" for line in day.lines)
    if output is None:
        sys.stdout.buffer.write(data)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(data)
    if truth is not None:
        truth.write_bytes(
            b"".join(orjson.dumps({"event_id": e, "person": p}) + b"\n" for e, p in day.truth.items())
        )
    console.print(
        f"{len(day.lines)} lines ({day.malformed} malformed, {day.duplicates} resent) "
        f"for {people} people over {days} day(s)"
    )


def _effect_table(topo: Topology, outputs: dict[str, list[Any]]) -> dict[str, Any]:
    """The per-rule effect (`stream_app.effect.report`) from records of the output topics."""
    from stream_app.effect.report import effect_by_rule

    t = topo.topics

    def values(*specs: Any) -> list[bytes | None]:
        return [r.value for spec in specs for r in outputs.get(spec.name, [])]

    return effect_by_rule(
        topo.rules,
        values(t.coupons, t.guide_alerts),
        values(t.actions_suppressed),
        values(t.conversions),
    )


def _print_effect(table: dict[str, Any], out: Console) -> None:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    effect = Table(
        title="campaign effect by rule (conversions in each rule's attribution window)",
        caption="uplift = conversion rate sent − held out, 95% interval: normal approximation for a "
        "difference of proportions (Wald); rates per action",
    )
    for column in (
        "rule",
        "actions",
        "converted",
        "rate",
        "revenue",
        "holdout",
        "converted ",
        "rate ",
        "uplift",
        "95% interval",
    ):
        effect.add_column(column, justify="left" if column == "rule" else "right")
    for rule, e in table.items():
        interval = e.interval
        effect.add_row(
            rule,
            str(e.treated),
            str(e.treated_converted),
            pct(e.rate),
            f"{e.revenue:,.2f}",
            str(e.holdout),
            str(e.holdout_converted),
            pct(e.holdout_rate),
            "-" if e.uplift is None else f"{100 * e.uplift:+.1f} pp",
            "-" if interval is None else f"[{100 * interval[0]:+.1f}, {100 * interval[1]:+.1f}] pp",
        )
    out.print(effect)


@command(cls=_Command)
def effect(
    broker: BrokerOpt = None,
    topology: TopologyOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON instead of a table (also when stdout is not a terminal)")
    ] = False,
) -> None:
    """Per rule: actions, conversion rate, attributed revenue, uplift over the holdout (95% interval).

    Reads coupons, guide-alerts, actions-suppressed (reason holdout) and conversions to their end."""
    from stream_app.io.kafka import read_topics

    settings = _settings(broker=broker, topology=topology)
    topo = _topology(settings)
    bootstrap = _reachable_broker(settings)
    t = topo.topics
    names = [spec.name for spec in (t.coupons, t.guide_alerts, t.actions_suppressed, t.conversions)]
    with _broker_errors():
        outputs = read_topics(bootstrap, names, security=settings.kafka)
    table = _effect_table(topo, outputs)
    if as_json or not _terminal():
        data = {rule: e.to_json() for rule, e in table.items()}
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    _print_effect(table, Console())


def main() -> None:
    app()
