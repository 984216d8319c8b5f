from hypothesis import given
from hypothesis import strategies as st

from stream_app.control import Barrier, Marker, StageDone, is_control
from stream_app.ingest.dedupe import is_first_delivery, position


@given(st.integers(1, 12), st.data())
def test_barrier_completes_once_whatever_the_order_and_redeliveries(sources, data):
    deliveries = data.draw(
        st.lists(st.integers(0, sources - 1), min_size=0, max_size=40)
        .map(lambda extra: extra + list(range(sources)))
        .flatmap(st.permutations)
    )
    barrier = Barrier()
    completions = [barrier.observe(5, Marker("r", False, p, sources)) for p in deliveries]
    assert completions.count(True) == 1
    first_complete = completions.index(True)
    assert set(deliveries[: first_complete + 1]) == set(range(sources))


def test_barrier_keeps_runs_and_partitions_apart():
    barrier = Barrier()
    assert not barrier.observe(0, Marker("a", False, 0, 2))
    assert not barrier.observe(1, Marker("a", False, 1, 2))
    assert not barrier.observe(0, Marker("b", False, 1, 2))
    assert barrier.observe(0, Marker("a", False, 1, 2))


def test_marker_roundtrip_and_header_detection():
    marker = Marker("r1", True, 3, 8)
    assert Marker.decode(marker.encode()) == marker
    done = StageDone("r1", "dedupe", 2, 8)
    assert StageDone.decode(done.encode()) == done
    assert is_control({"stream-app-control": b"1"})
    assert is_control([("x", b""), ("stream-app-control", b"1")])
    assert not is_control(None) and not is_control({}) and not is_control([("x", b"1")])


def test_dedupe_lets_redeliveries_through_but_not_duplicates():
    here = position(3, 10)
    assert is_first_delivery(None, here)
    assert is_first_delivery(here, here)
    assert not is_first_delivery(here, position(3, 11))
