"""The identity core on a generated population, scored against the generator's truth (no I/O)."""

from stream_app.config import load_topology
from stream_app.identity import IdentityResolver, IdentityRules, MappingIdentityStore
from stream_app.identity.records import event_keys
from stream_app.ingest import Accepted, Ingestor, PiiHasher
from stream_app.sample import generate
from stream_app.sample.scoring import score
from tests.unit.test_topology import REPO

DAY = generate(people=3000, days=3, seed=11)


def _events():
    ingestor = Ingestor.from_topology(load_topology(REPO / "topology.yaml"), PiiHasher(b"k"))
    outcomes = (ingestor.process(line) for line in DAY.lines)
    return [(o.event_id, event_keys(o.event)) for o in outcomes if isinstance(o, Accepted)]


def _score(rules):
    events = _events()
    resolver = IdentityResolver(MappingIdentityStore(), rules)
    for n, (event_id, keys) in enumerate(events):
        resolver.resolve(keys, event_id, n)
    predicted = {k: resolver.lookup(k) for _, keys in events for k in keys if resolver.lookup(k)}
    return score(events, DAY.truth, predicted)


def test_generated_population_resolves_without_wrong_merges():
    result = _score(IdentityRules())
    assert result.people > 2000 and result.identifiers > 5000 and result.allowed_pairs > 5000
    assert result.precision == 1.0
    assert result.recall == 1.0


def test_without_the_shared_device_rule_family_tablets_merge_people():
    """The population really holds the trap the rule is for: limits alone do not catch it."""
    result = _score(IdentityRules(shareable_types=frozenset()))
    assert result.precision < 1.0
