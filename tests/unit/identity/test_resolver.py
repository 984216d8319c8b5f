"""The identity core against every store implementation: dicts and RocksDB (rocksdict)."""

from __future__ import annotations

import itertools

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rocksdict import Rdict

from stream_app.identity import IdentityResolver, IdentityRules, MappingIdentityStore
from stream_app.identity.model import new_one_id
from stream_app.identity.store import encoded_store


def memory_store():
    return MappingIdentityStore()


def rocksdb_store(path):
    dbs = [Rdict(str(path / name)) for name in ("owners", "profiles", "aliases", "refusals")]
    return encoded_store(*dbs)


@pytest.fixture(params=["memory", "rocksdb"])
def make_resolver(request, tmp_path):
    counter = itertools.count()

    def make(rules=None):
        if request.param == "memory":
            store = memory_store()
        else:
            path = tmp_path / f"db{next(counter)}"
            path.mkdir()
            store = rocksdb_store(path)
        return IdentityResolver(store, rules or IdentityRules())

    return make


def test_identifiers_seen_together_are_one_person(make_resolver):
    from stream_app.identity import Resolution

    r = make_resolver()
    a = r.resolve(["member_id:M1", "phone:h:p1"], "e1", 100)
    assert a.created and a.one_id == new_one_id("member_id:M1")
    b = r.resolve(["phone:h:p1", "openid:o1"], "e2", 200)
    assert b.one_id == a.one_id and b.added == ("openid:o1",)
    assert r.resolve(["openid:o1"], "e3", 300) == Resolution(a.one_id)


def test_anonymous_browsing_is_stitched_to_the_login(make_resolver):
    r = make_resolver()
    anonymous = r.resolve(["device_id:D1"], "e1", 100).one_id
    login = r.resolve(["member_id:M1", "device_id:D1"], "e2", 200)
    assert login.one_id == anonymous  # the device's profile absorbs the member id, no merge needed
    assert login.added == ("member_id:M1",) and not login.conflicts


def test_older_profile_survives_a_merge(make_resolver):
    r = make_resolver()
    old = r.resolve(["phone:h:p1"], "e1", 100).one_id
    young = r.resolve(["member_id:M1"], "e2", 200).one_id
    res = r.resolve(["member_id:M1", "phone:h:p1"], "e3", 300)
    assert res.one_id == old
    (merge,) = res.merges
    assert (merge.one_id, merge.merged_one_id, merge.event_id) == (old, young, "e3")
    assert r.lookup("member_id:M1") == old
    assert r.store.current(young) == old and r.store.profile(young) is None
    assert sorted(r.store.profile(old).identifier_keys()) == ["member_id:M1", "phone:h:p1"]


def test_survivor_is_by_event_time_not_arrival(make_resolver):
    r = make_resolver()
    late_arrival = r.resolve(["phone:h:p1"], "e1", 500).one_id
    early_event = r.resolve(["member_id:M1"], "e2", 100).one_id
    assert r.resolve(["member_id:M1", "phone:h:p1"], "e3", 600).one_id == early_event != late_arrival


def test_two_member_ids_never_merge(make_resolver):
    r = make_resolver()
    a = r.resolve(["member_id:M1", "phone:h:p1"], "e1", 100).one_id
    res = r.resolve(["member_id:M2", "phone:h:p1"], "e2", 200)
    # Attributed to the highest-priority identifier's profile: M2 is new, so a new person.
    assert res.one_id != a and res.one_id == new_one_id("member_id:M2")
    (conflict,) = res.conflicts
    assert conflict.reason == "limit:member_id"
    assert conflict.other_one_id == a and conflict.refused == ("phone:h:p1",)
    assert r.lookup("phone:h:p1") == a


def test_phone_limit(make_resolver):
    r = make_resolver()
    one = r.resolve(["member_id:M1", "phone:h:p1", "phone:h:p2", "phone:h:p3"], "e1", 100).one_id
    res = r.resolve(["member_id:M1", "phone:h:p4"], "e2", 200)
    assert res.one_id == one and res.conflicts[0].reason == "limit:phone"
    assert r.lookup("phone:h:p4") is None


def test_family_tablet_links_nobody(make_resolver):
    r = make_resolver()
    mum = r.resolve(["member_id:M1", "phone:h:mum", "device_id:tablet"], "e1", 100).one_id
    kid = r.resolve(["email:h:kid", "order_no:O1", "device_id:tablet"], "e2", 200)
    assert kid.one_id != mum
    assert kid.conflicts[0].reason == "shared_identifier"
    assert r.lookup("email:h:kid") == kid.one_id and r.lookup("device_id:tablet") == mum
    # A browse on the tablet alone goes to its owner; neither person gains the other's ids.
    assert r.resolve(["device_id:tablet"], "e3", 300).one_id == mum
    hubs = dict(r.store.refusals())
    assert hubs["device_id:tablet"]["count"] == 1
    assert set(hubs["device_id:tablet"]["one_ids"]) == {mum, kid.one_id}


def test_a_shared_device_may_join_an_anonymous_profile(make_resolver):
    r = make_resolver()
    person = r.resolve(["member_id:M1", "device_id:D1"], "e1", 100).one_id
    anon = r.resolve(["device_id:D2"], "e2", 150).one_id
    res = r.resolve(["device_id:D1", "device_id:D2"], "e3", 200)
    assert res.one_id == person and res.merges[0].merged_one_id == anon


def test_device_limit(make_resolver):
    r = make_resolver(IdentityRules(limits={"device_id": 2}))
    one = r.resolve(["member_id:M1", "device_id:D1", "device_id:D2"], "e1", 100).one_id
    res = r.resolve(["member_id:M1", "device_id:D3"], "e2", 200)
    assert res.one_id == one and res.conflicts[0].reason == "limit:device_id"


def test_evidence_keeps_the_linking_events(make_resolver):
    r = make_resolver()
    r.resolve(["member_id:M1"], "e1", 100)
    r.resolve(["phone:h:p1", "order_no:O1"], "e2", 200)
    one = r.resolve(["member_id:M1", "phone:h:p1"], "e3", 300).one_id
    r.resolve(["member_id:M1"], "e4", 400)  # changes nothing, is not evidence
    links = r.store.profile(one).links
    assert sorted(link[0] for link in links) == ["e1", "e2", "e3"]


def test_a_person_names_every_fragment_merged_into_it_along_a_chain(make_resolver):
    r = make_resolver()
    a = r.resolve(["member_id:M1"], "e1", 100).one_id
    b = r.resolve(["phone:h:p1"], "e2", 200).one_id
    c = r.resolve(["email:h:m1"], "e3", 300).one_id
    assert r.fragments(a) == []
    assert r.resolve(["phone:h:p1", "email:h:m1"], "e4", 400).one_id == b  # c into b
    assert r.resolve(["member_id:M1", "phone:h:p1"], "e5", 500).one_id == a  # b (with c) into a
    assert sorted(r.fragments(a)) == sorted([b, c])
    assert r.fragments(b) == []  # merged: no profile of its own any more


def test_a_profile_stored_before_fragments_were_kept_still_loads():
    from stream_app.identity.model import Profile

    old = {"one_id": "p_1", "created_ms": 1, "ids": {"member_id": ["M1"]}, "links": []}
    assert Profile.from_dict(old).merged == []
    assert Profile.from_dict(old).to_dict() == old


def _components(events):
    graph = nx.Graph()
    for keys in events:
        graph.add_nodes_from(keys)
        graph.add_edges_from(zip(keys, keys[1:], strict=False))
    return {frozenset(c) for c in nx.connected_components(graph)}


def _clusters(resolver, keys):
    by_owner = {}
    for key in keys:
        by_owner.setdefault(resolver.lookup(key), set()).add(key)
    return {frozenset(v) for v in by_owner.values()}


identifier = st.builds(
    lambda t, n: f"{t}:{n}",
    st.sampled_from(["member_id", "phone", "email", "unionid", "openid", "order_no", "device_id"]),
    st.integers(0, 12),
)
events = st.lists(st.lists(identifier, min_size=1, max_size=4, unique=True), min_size=1, max_size=40)


def _partitioned_order(evs, partitions, rnd):
    """The order a single linker sees events in when they come from `partitions` upstream
    partitions (each keeps its own order; the interleaving is anyone's guess)."""
    queues = [[] for _ in range(partitions)]
    for keys in evs:
        queues[rnd.randrange(partitions)].append(keys)
    order = []
    while any(queues):
        queue = rnd.choice([q for q in queues if q])
        order.append(queue.pop(0))
    return order


@settings(max_examples=150, deadline=None)
@given(events, st.integers(1, 8), st.randoms(use_true_random=False))
def test_without_limits_identity_is_connected_components_in_any_order(evs, partitions, rnd):
    shuffled = _partitioned_order(evs, partitions, rnd)
    resolver = IdentityResolver(memory_store(), IdentityRules.unlimited())
    for n, keys in enumerate(shuffled):
        resolver.resolve(keys, f"e{n}", rnd.randrange(10_000))
    all_keys = {k for keys in evs for k in keys}
    assert _clusters(resolver, all_keys) == _components(evs)
    live = list(resolver.store.profiles())
    assert sum(p.size() for p in live) == len(all_keys)  # every identifier in exactly one profile


@settings(max_examples=100, deadline=None)
@given(events, st.randoms(use_true_random=False))
def test_with_limits_no_profile_ever_breaks_one(evs, rnd):
    rules = IdentityRules(limits={"member_id": 1, "phone": 2, "device_id": 3})
    resolver = IdentityResolver(memory_store(), rules)
    for n, keys in enumerate(evs):
        resolver.resolve(keys, f"e{n}", rnd.randrange(10_000))
    for profile in resolver.store.profiles():
        for id_type, limit in rules.limits.items():
            assert profile.count(id_type) <= limit
        for key in profile.identifier_keys():
            assert resolver.lookup(key) == profile.one_id


def test_buffered_store_writes_nothing_until_commit():
    from stream_app.identity.store import BufferedIdentityStore

    inner = memory_store()
    IdentityResolver(inner).resolve(["phone:h:p1"], "e1", 100)
    buffered = BufferedIdentityStore(inner)
    res = IdentityResolver(buffered).resolve(["member_id:M1", "phone:h:p1", "email:h:x"], "e2", 50)
    assert inner.owner("member_id:M1") is None and buffered.owner("member_id:M1") == res.one_id
    assert buffered.pending
    buffered.commit()
    assert not buffered.pending
    assert inner.owner("member_id:M1") == inner.owner("phone:h:p1") == res.one_id
    assert inner.profile(res.one_id).count("email") == 1
