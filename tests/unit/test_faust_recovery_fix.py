"""The Faust recovery workaround seeks stream partitions before resuming them (no I/O: a stub)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from stream_app.worker import faust_recovery_fix


class _Recorder:
    """Makes stand-ins for Faust's methods that write down that they were called."""

    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, name):
        def record(*args, **kwargs):
            self.calls.append(name)

        return record


def _stub_recovery(calls: _Recorder) -> SimpleNamespace:
    async def seek():
        calls.calls.append("perform_seek")

    async def nothing(*args, **kwargs):
        return None

    async def wait(coro, timeout=None):
        await coro

    consumer = SimpleNamespace(
        assignment=lambda: {"touchpoints-0", "event-ids-changelog-0"},
        perform_seek=seek,
        resume_partitions=calls("resume_partitions"),
        resume_flow=calls("resume_flow"),
    )
    app = SimpleNamespace(
        consumer=consumer,
        on_rebalance_complete=SimpleNamespace(send=nothing),
        consumer_generation_id=3,
        conf=SimpleNamespace(broker_request_timeout=10),
        flow_control=SimpleNamespace(resume=calls("flow_control.resume")),
        _fetcher=SimpleNamespace(maybe_start=nothing),
        assignor=SimpleNamespace(assigned_standbys=lambda: set()),
        on_rebalance_end=calls("on_rebalance_end"),
    )
    return SimpleNamespace(
        app=app,
        log=SimpleNamespace(info=lambda *a: None, warning=lambda *a: None, dev=lambda *a: None),
        tables={},
        actives_for_table={},
        standbys_for_table={},
        completed=SimpleNamespace(set=calls("completed")),
        _set_recovery_ended=calls("recovery_ended"),
        _wait=wait,
        _is_changelog_tp=lambda tp: "changelog" in tp,
    )


def _order(method) -> list[str]:
    calls = _Recorder()
    recovery = _stub_recovery(calls)
    recovery.tables = SimpleNamespace(
        values=lambda: [], on_actives_ready=calls("actives_ready"), on_standbys_ready=calls("standbys_ready")
    )
    asyncio.run(method(recovery, generation_id=3))
    return [c for c in calls.calls if c in ("perform_seek", "resume_partitions")]


def test_stream_partitions_are_sought_before_they_resume():
    assert _order(faust_recovery_fix.on_recovery_completed) == ["perform_seek", "resume_partitions"]


def test_faust_itself_still_resumes_first():
    """When this fails, Faust seeks first on its own: drop `faust_recovery_fix`."""
    assert _order(faust_recovery_fix._original) == ["resume_partitions", "perform_seek"]


def test_install_swaps_the_method(monkeypatch):
    from faust.tables.recovery import Recovery

    monkeypatch.setattr(Recovery, "on_recovery_completed", faust_recovery_fix._original)
    faust_recovery_fix.install()
    assert Recovery.on_recovery_completed is faust_recovery_fix.on_recovery_completed


@pytest.fixture(autouse=True)
def _restore():
    from faust.tables.recovery import Recovery

    before = Recovery.on_recovery_completed
    yield
    Recovery.on_recovery_completed = before
