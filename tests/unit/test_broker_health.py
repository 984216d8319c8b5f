"""The pure parts of the broker monitor: identity comparison, the outage log, the client log gate."""

from __future__ import annotations

import logging

import pytest

from stream_app.worker.broker_health import (
    BrokerIdentity,
    ClientLogGate,
    OutageLog,
    lost_data,
    normal_topic_id,
)

RECORDED = BrokerIdentity("cluster-a", {"changelog": "id-1", "events": "id-2"})


@pytest.mark.parametrize(
    ("now", "lost"),
    [
        (BrokerIdentity("cluster-a", {"changelog": "id-1", "events": "id-2"}), False),
        (BrokerIdentity("cluster-a", {"changelog": "id-1", "events": "id-2", "new": "id-9"}), False),
        (BrokerIdentity(None, {"changelog": "id-1", "events": "id-2"}), False),  # no cluster id answered
        (BrokerIdentity("cluster-a", {"changelog": "", "events": "id-2"}), False),  # broker without ids
        (BrokerIdentity("cluster-b", {"changelog": "id-1", "events": "id-2"}), True),
        (BrokerIdentity("cluster-a", {"events": "id-2"}), True),  # a changelog is gone
        (BrokerIdentity("cluster-a", {}), True),  # an emptied broker (a restarted Tansu)
        (BrokerIdentity("cluster-a", {"changelog": "id-7", "events": "id-2"}), True),  # created again
    ],
)
def test_lost_data_when_the_cluster_or_a_topic_is_not_the_recorded_one(now, lost):
    assert (lost_data(RECORDED, now) is not None) == lost


def test_lost_data_names_what_is_missing():
    reason = lost_data(RECORDED, BrokerIdentity("cluster-a", {}))
    assert reason is not None and "changelog" in reason and "events" in reason


def test_identity_round_trips_and_learns_new_topics_only():
    assert BrokerIdentity.from_json(RECORDED.to_json()) == RECORDED
    seen = BrokerIdentity("cluster-a", {"changelog": "other", "later": "id-3"})
    learnt = RECORDED.with_new_topics(seen).topic_ids
    assert learnt == {"changelog": "id-1", "events": "id-2", "later": "id-3"}
    assert RECORDED.with_new_topics(RECORDED) is RECORDED


def test_topic_ids_of_brokers_without_them_compare_as_unknown():
    assert normal_topic_id(None) == ""
    assert normal_topic_id("AAAAAAAAAAAAAAAAAAAAAA") == ""
    assert normal_topic_id("AaIwpwR2cpGXr77cRPqpiQ") == "AaIwpwR2cpGXr77cRPqpiQ"


def _texts(lines):
    return [line.text for line in lines]


def test_an_outage_is_one_line_a_reminder_every_30_s_and_one_line_when_back():
    out = OutageLog("b:9092", remind_every=30.0)
    assert out.probed(True, now=0.0) == []
    for _ in range(500):
        out.client_error("Unable connect to node with id 111")
    start = _texts(out.probed(False, now=1.0))
    assert len(start) == 1 and "unreachable" in start[0] and "Unable connect" in start[0]
    quiet = [out.probed(False, now=t) for t in (2.0, 10.0, 30.9)]
    assert quiet == [[], [], []]
    out.client_error("NodeNotReadyError")
    reminder = _texts(out.probed(False, now=31.0))
    assert len(reminder) == 1 and "still unreachable after 30 s" in reminder[0] and "(1 Kafka" in reminder[0]
    assert out.probed(False, now=45.0) == []
    back = _texts(out.probed(True, now=50.5))
    assert len(back) == 1 and "reachable again after 49.5 s" in back[0]
    assert out.up and out.outages == 1
    assert out.probed(True, now=51.0) == []


def test_client_errors_while_the_broker_answers_are_summarised_at_most_every_30_s():
    out = OutageLog("b:9092", remind_every=30.0)
    out.client_error("producer buffer full")
    out.client_error("something else")
    first = _texts(out.probed(True, now=100.0))
    assert len(first) == 1 and "reported 2" in first[0] and "producer buffer full" in first[0]
    out.client_error("again")
    assert out.probed(True, now=110.0) == []
    assert len(out.probed(True, now=130.0)) == 1
    assert out.outages == 0


def _record(name: str, level: int, text: str = "msg") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, text, None, None)


def test_the_gate_holds_back_client_warnings_and_lets_everything_else_through():
    held: list[str] = []
    gate = ClientLogGate(held.append)
    assert not gate.filter(_record("aiokafka.conn", logging.ERROR, "Unable connect"))
    assert not gate.filter(_record("aiokafka", logging.WARNING))
    assert gate.filter(_record("faust.transport.drivers.aiokafka", logging.WARNING))
    assert gate.filter(_record("aiokafka.consumer", logging.INFO))
    assert gate.filter(_record("aiokafkaish", logging.ERROR))
    assert gate.filter(_record("stream_app.worker", logging.ERROR))
    assert gate.filter(_record("faust.tables", logging.ERROR))
    assert held == ["Unable connect", "msg"]
