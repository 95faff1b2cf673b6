"""The analysis definition: defaults, validation with clear errors, and the PromQL it renders."""

from __future__ import annotations

import json

import pytest

from modelship_contract.canary import DEFAULT, SELECTOR_LABEL, AnalysisDefinition, DefinitionError, Step


def test_the_default_steps_go_10_then_50_percent_before_promotion() -> None:
    assert [s.weight for s in DEFAULT.steps] == [10, 50]
    assert all(s.hold_seconds > 0 for s in DEFAULT.steps)


def test_round_trip_through_json(tmp_path) -> None:
    path = tmp_path / "analysis.json"
    path.write_text(json.dumps(DEFAULT.to_dict()))
    assert AnalysisDefinition.load(path) == DEFAULT


@pytest.mark.parametrize(("data", "message"), [
    ({"stepz": []}, r"unknown keys \['stepz'\]"),
    ({"steps": []}, "at least one"),
    ({"steps": [{"weight": 50, "hold_seconds": 1}, {"weight": 10, "hold_seconds": 1}]},
     r"steps\[1\].weight must be an integer above the previous step's \(50\)"),
    ({"steps": [{"weight": 100, "hold_seconds": 1}]}, r"below 100 \(100 % is the promotion"),
    ({"steps": [{"weight": 10}]}, "exactly weight and hold_seconds"),
    ({"min_requests": 0}, "min_requests must be a positive integer"),
    ({"drift_threshold": -1}, r"drift_threshold must be a number in \[0.0, 100.0\]"),
    ({"p99_ratio": 0.5}, r"p99_ratio must be a number in \[1.0"),
    ({"drift_test": "ks"}, "drift_test 'ks' is not one of: psi"),
    ({"queries": {"nope": "x"}}, "queries must be an object with keys among"),
])
def test_a_bad_definition_names_the_key_and_what_is_allowed(data: dict, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        AnalysisDefinition.from_dict(data)


def test_a_definition_file_that_is_not_json_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{steps: ")
    with pytest.raises(DefinitionError, match="is not JSON"):
        AnalysisDefinition.load(bad)
    with pytest.raises(DefinitionError, match="cannot read"):
        AnalysisDefinition.load(tmp_path / "missing.json")


def test_queries_select_one_side_by_its_pod_template_hash_over_the_window() -> None:
    query = DEFAULT.query("predictions", "6f7c9d", 45)
    assert f'{SELECTOR_LABEL}="6f7c9d"' in query
    assert "offset 45s" in query and 'output="label"' in query
    assert query.startswith("sum by (label)")
    assert DEFAULT.query("p99_seconds", "x", 60).startswith("histogram_quantile(0.99, sum by (le)")


def test_a_hash_that_could_inject_promql_is_refused() -> None:
    with pytest.raises(DefinitionError, match="pod template hash"):
        DEFAULT.query("requests", 'x"} or vector(1) or {a="', 60)


def test_steps_are_typed() -> None:
    assert DEFAULT.steps[0] == Step(10, DEFAULT.steps[0].hold_seconds)
