from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from stream_app.cli import app
from stream_app.config import TopologyError, load_topology

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
    assert bad.exit_code == 1
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
