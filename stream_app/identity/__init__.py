"""One-ID: identifiers seen together on one event belong to one person, maintained incrementally.

Pure: `IdentityResolver.resolve(event)` reads and writes an `IdentityStore` (in memory, RocksDB or
Faust tables behind the same small interface) and returns the person's `one_id` with the merges and
refused links it caused. No Kafka, no Faust.
"""

from stream_app.identity.model import IdentityRules, Profile, identifier_key, split_key
from stream_app.identity.resolver import Conflict, IdentityResolver, Merge, Resolution
from stream_app.identity.store import IdentityStore, MappingIdentityStore

__all__ = [
    "Conflict",
    "IdentityResolver",
    "IdentityRules",
    "IdentityStore",
    "MappingIdentityStore",
    "Merge",
    "Profile",
    "Resolution",
    "identifier_key",
    "split_key",
]
