from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from stream_app.cli import app
from stream_app.config import TopologyError, load_topology
from stream_app.config.topology import parse_topology

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def _default() -> dict:
    return yaml.safe_load((REPO / "topology.yaml").read_text())


def test_default_topology_loads_with_the_contract_topics():
    topo = load_topology(REPO / "topology.yaml")
    assert topo.topics.touchpoints.partitions == 8
    names = {spec.name for spec in topo.output_topics()}
    assert names == {
        "touchpoints-dlq",
        "touchpoints-resolved",
        "identity-merges",
        "identity-conflicts",
        "profile-updates",
        "coupons",
        "guide-alerts",
        "actions-suppressed",
        "conversions",
        "audience-changes",
        "audience-members",
    }


def test_models_are_frozen():
    topo = load_topology(REPO / "topology.yaml")
    with pytest.raises(ValidationError, match="frozen"):
        topo.topics.touchpoints.partitions = 3  # type: ignore[misc]


def test_bad_value_names_file_path_and_reason(tmp_path):
    data = _default()
    data["topics"]["touchpoints"]["partitions"] = 0
    path = _write(tmp_path, data)
    with pytest.raises(TopologyError) as err:
        load_topology(path)
    (problem,) = err.value.problems
    assert problem.startswith(f"{path}: topics.touchpoints.partitions: ")
    assert "greater than or equal to 1" in problem


def test_unknown_field_is_refused(tmp_path):
    data = _default()
    data["topics"]["touchpoints"]["partitons"] = 4
    with pytest.raises(TopologyError, match=r"topics\.touchpoints\.partitons: Extra inputs"):
        load_topology(_write(tmp_path, data))


def test_unknown_identifier_type_in_deny_list(tmp_path):
    data = _default()
    data["identifiers"]["deny_list"]["qq"] = ["1"]
    with pytest.raises(TopologyError, match=r"identifiers\.deny_list: .*unknown identifier type"):
        load_topology(_write(tmp_path, data))


def test_duplicate_topic_names(tmp_path):
    data = _default()
    data["topics"]["coupons"]["name"] = "touchpoints"
    with pytest.raises(TopologyError, match="used twice"):
        load_topology(_write(tmp_path, data))


def test_yaml_syntax_error_has_line_and_column(tmp_path):
    path = _write(tmp_path, "topics:\n  touchpoints: {name: x\n")
    with pytest.raises(TopologyError, match=rf"{path}: line \d+, column \d+: invalid YAML"):
        load_topology(path)


def test_missing_file(tmp_path):
    with pytest.raises(TopologyError, match="cannot read"):
        load_topology(tmp_path / "nope.yaml")


def test_cli_validate_exit_codes(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(REPO / "topology.yaml")])
    assert ok.exit_code == 0, ok.output
    data = _default()
    data["replication_factor"] = "three"
    bad = runner.invoke(app, ["validate", str(_write(tmp_path, data))])
    assert bad.exit_code == 2
    assert "replication_factor" in bad.output


@pytest.mark.parametrize(("lateness", "ok"), [("0s", True), ("90s", True), ("0", False), ("-1m", False)])
def test_allowed_lateness_may_be_zero_but_needs_a_unit(tmp_path, lateness, ok):
    data = _default()
    data["allowed_lateness"] = lateness
    path = _write(tmp_path, data)
    if ok:
        assert load_topology(path).allowed_lateness == lateness
    else:
        with pytest.raises(TopologyError, match=r"allowed_lateness: String should match pattern"):
            load_topology(path)


def _broken_rules(tmp_path: Path) -> Path:
    """The default topology with the four broken rules of issue 8 (defect 9)."""
    data = _default()
    rules = data["rules"]
    rules["vip_store_visit"]["if"] = "vipp"
    rules["browse_interest"]["if"] = "views_24hh[properties['category']] == 3"
    rules["browse_interest"]["guide_alert"]["message"] = "客户 24 小时内第 3 次浏览 {categoryy}"
    rules["winback"]["if"] = "gap_days != null and gap_days >= 60 and before['order_countt'] >= 1"
    return _write(tmp_path, data)


def _refused(result, path: Path) -> list[str]:
    """The problem lines of a refused topology: exit 2, one `error file: place: reason` line each."""
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert all(line.startswith(f"error {path}: ") for line in lines), lines
    return [line.removeprefix(f"error {path}: ") for line in lines]


BROKEN_PLACES = [
    "rules.vip_store_visit.if: unknown tag 'vipp' (did you mean 'vip'? known: bound_guide_id,",
    "rules.browse_interest.if: unknown tag 'views_24hh' (did you mean 'views_24h'? known: ",
    "rules.browse_interest.guide_alert.message: unknown placeholder '{categoryy}' (did you mean 'category'?",
    "rules.winback.if: before['order_countt']: unknown tag 'order_countt' (did you mean 'order_count'?",
]


def test_cli_validate_refuses_broken_rules_with_exit_2_and_one_line_each(tmp_path):
    path = _broken_rules(tmp_path)
    problems = _refused(CliRunner().invoke(app, ["validate", str(path)]), path)
    assert len(problems) == len(BROKEN_PLACES), problems
    for problem, start in zip(sorted(problems), sorted(BROKEN_PLACES), strict=True):  # dumped sorted
        assert problem.startswith(start), problem


def test_a_worker_refuses_to_start_on_broken_rules(tmp_path, monkeypatch):
    """The `worker` command loads its topology through `load_topology` before Faust starts."""
    import stream_app.worker.run

    started: list[object] = []
    monkeypatch.setattr(stream_app.worker.run, "run_worker", lambda settings, topo: started.append(topo))
    monkeypatch.setattr("logging.basicConfig", lambda **kwargs: None)
    path = _broken_rules(tmp_path)
    worker = ["worker", "--broker", "kafka://127.0.0.1:9", "--topology"]
    problems = _refused(CliRunner().invoke(app, [*worker, str(path)]), path)
    assert started == []
    assert sorted(p[:40] for p in problems) == sorted(p[:40] for p in BROKEN_PLACES)
    # the same command with a good file gets as far as starting the worker (here: the stand-in)
    ok = CliRunner().invoke(app, [*worker, str(REPO / "topology.yaml")])
    assert ok.exit_code == 0, ok.output
    assert len(started) == 1


def test_tag_and_rule_problems_are_reported_together():
    data = yaml.safe_load((REPO / "topology.yaml").read_text())
    data["tags"]["hot"] = {"kind": "derived", "expr": "vipp"}
    data["rules"]["welcome"]["if"] = "order_countt == 0"
    with pytest.raises(TopologyError) as failure:
        parse_topology(data, "t.yaml")
    places = [problem.split(": ")[1] for problem in failure.value.problems]
    assert "tags.hot.expr" in places and "rules.welcome.if" in places
