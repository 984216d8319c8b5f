"""A crash can land part of the linker's commit: an identifier's owner without that owner's profile.

The linker's tables (owners, profiles, aliases) each have their own changelog; a worker that
recovers them after a crash (its state wiped, or the partition moved to another worker) may find
the owner records of an uncommitted batch without its profile records, and its replay then finds
every identifier of the batch's events owned, so the profile is never written again. Events were
published under that owner's one_id; it must stay the person's: later events resolve to it, and
joining it to another person is a merge (on identity-merges), never a silent hand-over of keys.
"""

from __future__ import annotations

from stream_app.identity import IdentityResolver, IdentityRules, MappingIdentityStore


def _recovered_without_profile() -> tuple[IdentityResolver, MappingIdentityStore, str]:
    """A store where the first person's owners landed and their profile did not."""
    whole = IdentityResolver(MappingIdentityStore(), IdentityRules.unlimited())
    first = whole.resolve(["member_id:M1", "device_id:D1"], "e1", 1_000).one_id
    owners = {key: first for key in ("member_id:M1", "device_id:D1")}
    store = MappingIdentityStore(owners=owners)
    return IdentityResolver(store, IdentityRules.unlimited()), store, first


def test_a_new_identifier_joins_the_owner_whose_profile_is_missing():
    resolver, store, first = _recovered_without_profile()
    resolution = resolver.resolve(["device_id:D1", "openid:O1"], "e2", 2_000)
    assert resolution.one_id == first
    assert store.owner("openid:O1") == first
    profile = store.profile(first)
    assert profile is not None and "O1" in profile.ids["openid"]


def test_joining_another_person_is_a_merge_not_a_silent_hand_over():
    resolver, store, first = _recovered_without_profile()
    other = resolver.resolve(["phone:h1"], "e2", 500).one_id  # older than the rebuilt profile
    resolution = resolver.resolve(["device_id:D1", "phone:h1"], "e3", 3_000)
    assert resolution.one_id == other
    assert [(m.merged_one_id, m.one_id) for m in resolution.merges] == [(first, other)]
    assert store.current(first) == other
    # What the event did not name (M1) is still owned by the merged one_id: it leads to the survivor.
    later = resolver.resolve(["member_id:M1", "openid:O9"], "e4", 4_000)
    assert later.one_id == other and not later.merges and store.owner("openid:O9") == other
