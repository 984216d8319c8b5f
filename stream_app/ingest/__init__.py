"""Ingest: decode, validate against `schemas/touchpoint.v1.json`, normalise identifiers, hash PII.

Pure: no Kafka, no Faust, no RocksDB. `Ingestor.process(raw_bytes)` returns an `Accepted` event or a
`Rejected` reason; the Faust adapter routes the latter to the DLQ.
"""

from stream_app.ingest.identifiers import IdentifierRules, normalize_identifier
from stream_app.ingest.pii import PiiHasher
from stream_app.ingest.pipeline import Accepted, Ingestor, Rejected

__all__ = [
    "Accepted",
    "IdentifierRules",
    "Ingestor",
    "PiiHasher",
    "Rejected",
    "normalize_identifier",
]
