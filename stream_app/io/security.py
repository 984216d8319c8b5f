"""Kafka security settings (`KafkaSecurity`, from `STREAM_APP_KAFKA_*`) as each client family's config.

One function per family, and every client of the process is built through one of them:

- `faust_config`: Faust's `broker_credentials` (its consumer, producer and topic admin on aiokafka);
- `aiokafka_config`: the worker's own aiokafka consumers (identity replica, DLQ ledger);
- `confluent_config`: confluent-kafka admin, producer and consumer (`stream_app.io.kafka`, the broker
  monitor).

`None` means plaintext: the embedded broker, which takes nothing else. The configs hold the
secrets in clear (the clients need them): never log one.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.helpers import create_ssl_context

from stream_app.config.settings import KafkaSecurity


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext | None:
    """The TLS context of the Python clients (aiokafka, Faust); None without TLS."""
    if not security.tls:
        return None
    password = security.ssl_key_password
    context = create_ssl_context(
        cafile=security.ssl_ca_file,
        certfile=security.ssl_cert_file,
        keyfile=security.ssl_key_file,
        password=password.get_secret_value() if password is not None else None,
    )
    context.check_hostname = security.ssl_check_hostname
    return context


def _sasl(security: KafkaSecurity) -> tuple[str, str, str]:
    assert security.sasl_mechanism and security.sasl_username and security.sasl_password  # validated
    return security.sasl_mechanism, security.sasl_username, security.sasl_password.get_secret_value()


def faust_config(security: KafkaSecurity | None) -> dict[str, Any]:
    """Faust settings: `broker_credentials` for a secured cluster, nothing for plaintext.

    >>> faust_config(KafkaSecurity(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
    ...                            sasl_username="app", sasl_password="pw"))
    {'broker_credentials': <SASLCredentials: username=app>}
    """
    import faust  # here, not at the top: the confluent-kafka tools need no Faust

    if security is None or security.security_protocol == "PLAINTEXT":
        return {}
    context = ssl_context(security)
    if security.sasl:
        mechanism, username, password = _sasl(security)
        credentials: faust.auth.Credentials = faust.SASLCredentials(
            username=username, password=password, mechanism=mechanism, ssl_context=context
        )
    else:
        credentials = faust.SSLCredentials(context)
    return {"broker_credentials": credentials}


def aiokafka_config(security: KafkaSecurity | None) -> dict[str, Any]:
    """Keyword arguments for `aiokafka.AIOKafkaConsumer` / `AIOKafkaProducer`.

    >>> aiokafka_config(None)
    {'security_protocol': 'PLAINTEXT'}
    """
    if security is None:
        return {"security_protocol": "PLAINTEXT"}
    conf: dict[str, Any] = {"security_protocol": security.security_protocol}
    if security.sasl:
        mechanism, username, password = _sasl(security)
        conf.update(sasl_mechanism=mechanism, sasl_plain_username=username, sasl_plain_password=password)
    if security.tls:
        conf["ssl_context"] = ssl_context(security)
    return conf


def confluent_config(security: KafkaSecurity | None) -> dict[str, str]:
    """librdkafka properties for confluent-kafka's `AdminClient`, `Producer` and `Consumer`.

    >>> confluent_config(KafkaSecurity(security_protocol="SSL", ssl_check_hostname=False))
    {'security.protocol': 'SSL', 'ssl.endpoint.identification.algorithm': 'none'}
    """
    if security is None or security.security_protocol == "PLAINTEXT":
        return {}
    conf: dict[str, str] = {"security.protocol": security.security_protocol}
    if security.sasl:
        mechanism, username, password = _sasl(security)
        conf.update({"sasl.mechanism": mechanism, "sasl.username": username, "sasl.password": password})
    if security.tls:
        for key, path in [
            ("ssl.ca.location", security.ssl_ca_file),
            ("ssl.certificate.location", security.ssl_cert_file),
            ("ssl.key.location", security.ssl_key_file),
        ]:
            if path is not None:
                conf[key] = str(path)
        if security.ssl_key_password is not None:
            conf["ssl.key.password"] = security.ssl_key_password.get_secret_value()
        conf["ssl.endpoint.identification.algorithm"] = "https" if security.ssl_check_hostname else "none"
    return conf
