"""Is the broker there, and is it still the broker this worker's local state was built on? (pure)

Two questions a worker must answer without drowning its log:

- **Reachability.** While the broker is down, aiokafka logs every failed connect, fetch, heartbeat
  and commit: thousands of lines a minute. `ClientLogGate` holds those records back and counts them;
  `OutageLog` turns probe results into a few lines: one when the outage starts, a reminder at most
  every `REMIND_EVERY_S`, one when the broker is back.
- **Identity.** Local RocksDB state is a cache of changelog topics and is only valid against the
  broker that holds them. A `BrokerIdentity` (cluster id and topic ids) is recorded in the data
  directory and compared with what the broker says (`lost_data`), at start before Faust's recovery
  and while running. Topic ids matter: Tansu keeps its cluster id (`tansu_cluster`) across restarts
  but loses every topic, and a topic created again gets a new id.

The adapter (probes, the data-directory file, Faust wiring) is `stream_app.worker.broker_monitor`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import orjson

REMIND_EVERY_S = 30.0
"""At most one line per this many seconds about the same outage or the same client noise."""
EXIT_BROKER_DATA_LOST = 3
"""Exit code of a worker that stopped because the broker lost the data its local state came from."""
CLIENT_LOGGERS = ("aiokafka",)
"""Loggers of the Kafka client, whose warnings and errors `ClientLogGate` summarises: the flood of
an outage is all aiokafka's; Faust's own warnings stay in the log as they are."""
_NO_TOPIC_ID = "AAAAAAAAAAAAAAAAAAAAAA"  # the all-zero UUID a broker without topic ids answers


@dataclass(frozen=True)
class BrokerIdentity:
    """What a broker says it is: its cluster id and the ids of the topics we care about.

    >>> a = BrokerIdentity("c1", {"t": "id1"})
    >>> BrokerIdentity.from_json(a.to_json()) == a
    True
    """

    cluster_id: str | None
    topic_ids: Mapping[str, str] = field(default_factory=dict)
    """Topic name -> topic id; "" where the broker has no topic ids (Kafka before 2.8)."""

    def to_json(self) -> bytes:
        return orjson.dumps({"cluster_id": self.cluster_id, "topic_ids": dict(self.topic_ids)})

    @classmethod
    def from_json(cls, data: bytes) -> BrokerIdentity:
        value = orjson.loads(data)
        return cls(value.get("cluster_id"), {str(k): str(v) for k, v in value.get("topic_ids", {}).items()})

    def with_new_topics(self, now: BrokerIdentity) -> BrokerIdentity:
        """This record plus the topics `now` has that it did not know (created since)."""
        added = {name: tid for name, tid in now.topic_ids.items() if name not in self.topic_ids}
        return BrokerIdentity(self.cluster_id, {**self.topic_ids, **added}) if added else self


def normal_topic_id(topic_id: object) -> str:
    """A topic id as text; "" for none (old brokers answer none or the all-zero UUID)."""
    text = "" if topic_id is None else str(topic_id)
    return "" if text in ("", _NO_TOPIC_ID, "None") else text


def lost_data(recorded: BrokerIdentity, now: BrokerIdentity) -> str | None:
    """Why the broker no longer holds the data `recorded` was taken from; None if it still may.

    >>> lost_data(BrokerIdentity("c", {"t": "a"}), BrokerIdentity("c", {"t": "a", "u": "b"})) is None
    True
    >>> lost_data(BrokerIdentity("c", {"t": "a"}), BrokerIdentity("c", {}))
    'topic t is gone'
    >>> lost_data(BrokerIdentity("c", {"t": "a"}), BrokerIdentity("c", {"t": "b"}))
    'topic t was deleted and created again'
    """
    if recorded.cluster_id and now.cluster_id and recorded.cluster_id != now.cluster_id:
        return f"the cluster id was {recorded.cluster_id!r} and is now {now.cluster_id!r}"
    gone = sorted(set(recorded.topic_ids) - set(now.topic_ids))
    if gone:
        return _topics_phrase(gone, "is gone", "are gone")
    recreated = sorted(
        name
        for name, topic_id in recorded.topic_ids.items()
        if topic_id and now.topic_ids.get(name) and now.topic_ids[name] != topic_id
    )
    if recreated:
        return _topics_phrase(recreated, "was deleted and created again", "were deleted and created again")
    return None


def _topics_phrase(names: list[str], one: str, many: str) -> str:
    if len(names) == 1:
        return f"topic {names[0]} {one}"
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"{len(names)} topics {many} ({shown})"


@dataclass(frozen=True)
class Line:
    """A line to log: a level from `logging` and its text."""

    level: int
    text: str


class OutageLog:
    """Probe results and client errors in, a few log lines out (a state machine; clock injected).

    >>> out = OutageLog("127.0.0.1:9092")
    >>> out.client_error("Unable connect to node with id 1")
    >>> [line.text.split(":")[0] for line in out.probed(False, now=0.0)]
    ['broker 127.0.0.1']
    >>> out.probed(False, now=10.0), out.up, out.outages
    ([], False, 1)
    >>> [line.text.split(" after")[0] for line in out.probed(True, now=12.5)]
    ['broker 127.0.0.1:9092 reachable again']
    """

    def __init__(self, where: str, remind_every: float = REMIND_EVERY_S):
        self.where = where
        self.remind_every = remind_every
        self.up = True
        """As far as the last probe knows (the worker starts once it has reached the broker)."""
        self.outages = 0
        self._down_since = 0.0
        self._last_line_at = float("-inf")
        self._lock = threading.Lock()  # client errors come from Faust's consumer thread too
        self._errors = 0
        self._first_error: str | None = None

    def client_error(self, text: str) -> None:
        """A warning or error of the Kafka client, held back from the log and counted."""
        with self._lock:
            self._errors += 1
            if self._first_error is None:
                self._first_error = text

    def probed(self, reachable: bool, now: float) -> list[Line]:
        """The broker answered (or not) at `now`: what to log about it."""
        with self._lock:
            errors, first = self._errors, self._first_error
        if not reachable and self.up:
            self.up, self.outages, self._down_since = False, self.outages + 1, now
            cause = f" ({first})" if first else ""
            return self._said(
                now,
                logging.WARNING,
                f"broker {self.where} unreachable{cause}; /ready answers 503 until it is back; "
                f"Kafka client errors are held back and summarised here at most every "
                f"{self.remind_every:.0f} s",
            )
        if not reachable:
            if now - self._last_line_at < self.remind_every:
                return []
            return self._said(
                now,
                logging.WARNING,
                f"broker {self.where} still unreachable after {now - self._down_since:.0f} s "
                f"({errors} Kafka client errors held back since the last line)",
            )
        if not self.up:
            self.up = True
            return self._said(
                now,
                logging.WARNING,
                f"broker {self.where} reachable again after {now - self._down_since:.1f} s "
                f"({errors} Kafka client errors held back since the last line)",
            )
        if errors and now - self._last_line_at >= self.remind_every:
            return self._said(
                now,
                logging.WARNING,
                f"the Kafka client reported {errors} warning(s)/error(s) while broker {self.where} "
                f"answers; the first: {first}",
            )
        return []

    def _said(self, now: float, level: int, text: str) -> list[Line]:
        with self._lock:
            self._errors, self._first_error = 0, None
        self._last_line_at = now
        return [Line(level, text)]


class ClientLogGate(logging.Filter):
    """A handler filter: the Kafka client's warnings and errors go to `on_error`, not to the log.

    Installed once on the root handlers at worker start (`stream_app.worker.run`). Everything
    else, and the client's info and debug lines, pass unchanged.
    """

    def __init__(self, on_error: Callable[[str], None], loggers: Iterable[str] = CLIENT_LOGGERS):
        super().__init__()
        self._on_error = on_error
        self._prefixes = tuple(loggers)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not _under(record.name, self._prefixes):
            return True
        self._on_error(record.getMessage().strip())
        return False


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)
