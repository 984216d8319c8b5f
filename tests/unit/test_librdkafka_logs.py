"""librdkafka's own log lines go through Python logging, never raw to stderr (no broker needed).

A worker's log is JSON lines (`STREAM_APP_LOG_FORMAT=json`); librdkafka wrote `%6|...|BGQUEUE|...`
straight to the process's stderr when a client made by `client_config` was destroyed, and
`tests/integration/test_json_logs.py` caught one such line under load.
"""

from __future__ import annotations

import gc

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from stream_app.io.broker import free_port
from stream_app.io.kafka import client_config


def test_a_client_that_cannot_connect_writes_nothing_raw_to_stderr(capfd):
    admin = AdminClient(client_config(f"127.0.0.1:{free_port()}", None))  # nothing listens there
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=1)
    del admin
    gc.collect()
    assert "rdkafka#" not in capfd.readouterr().err
