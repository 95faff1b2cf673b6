"""The Argo Rollouts controller: a pinned Helm chart whose values the mocks check strictly."""

from __future__ import annotations

import copy

import pulumi
import pulumi_kubernetes as k8s
import pytest

from components import argo_rollouts
from components.argo_rollouts import ArgoRolloutsArgs, chart_values
from components.crd_schemas import schema_dir, values_errors
from components.testing import RecordingMocks, StackRun, helm_release_problems, one, run_stack
from tests.components.conftest import make_project, make_settings

RELEASE = "kubernetes:helm.sh/v3:Release"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> StackRun:
    root = make_project(tmp_path_factory.mktemp("rollouts") / "project")
    return run_stack(make_settings(), project_root=root)


def test_the_chart_is_pinned_and_installed_atomically_in_a_restricted_namespace(run: StackRun) -> None:
    release = one(run, RELEASE)
    inputs = release.inputs
    assert inputs["chart"] == "argo-rollouts" and inputs["version"] == argo_rollouts.CHART_VERSION
    assert inputs["repositoryOpts"] == {"repo": "https://argoproj.github.io/argo-helm"}
    assert inputs["atomic"] is True and inputs["namespace"] == "argo-rollouts"
    assert inputs["values"]["controller"]["image"]["tag"] == argo_rollouts.CONTROLLER_VERSION
    assert inputs["values"]["keepCRDs"] is True and inputs["values"]["dashboard"] == {"enabled": False}
    ns = next(r for r in run if r.name == "modelship-rollouts-ns")
    assert ns.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert release.inputs["namespace"] == ns.inputs["metadata"]["name"]
    assert release.provider.startswith(one(run, "pulumi:providers:kubernetes").urn + "::")


def test_the_values_fit_the_chart_contract_and_a_misspelt_one_does_not() -> None:
    values = chart_values(ArgoRolloutsArgs())
    assert values_errors(values, argo_rollouts.VALUES_SCHEMA) == []
    bad = copy.deepcopy(values)
    bad["controller"]["replica"] = 3  # Helm would ignore it silently
    assert values_errors(bad, argo_rollouts.VALUES_SCHEMA) == [
        "values.controller: Additional properties are not allowed ('replica' was unexpected)"]
    bad = copy.deepcopy(values)
    bad["controller"]["logging"] = {"level": "verbose"}
    assert any("'verbose' is not one of" in e for e in values_errors(bad, argo_rollouts.VALUES_SCHEMA))


def test_the_mocks_refuse_an_unpinned_chart_and_bad_values(run: StackRun) -> None:
    inputs = copy.deepcopy(one(run, RELEASE).inputs)
    assert helm_release_problems("r", inputs) == []
    unpinned = {**inputs, "version": None}
    assert any("must pin an exact chart version" in p for p in helm_release_problems("r", unpinned))
    other = {**inputs, "version": "2.35.0"}
    assert any("no known values contract" in p for p in helm_release_problems("r", other))
    plain = {**inputs, "repositoryOpts": {"repo": "http://argoproj.github.io/argo-helm"}}
    assert any("https chart repository" in p for p in helm_release_problems("r", plain))
    typo = copy.deepcopy(inputs)
    typo["values"]["dashbaord"] = {"enabled": False}
    assert any("'dashbaord' was unexpected" in p for p in helm_release_problems("r", typo))


def test_a_bad_release_fails_registration(mocks: RecordingMocks) -> None:
    def program() -> None:
        k8s.helm.v3.Release("rollouts", chart="argo-rollouts", version=argo_rollouts.CHART_VERSION,
                            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=argo_rollouts.CHART_REPOSITORY),
                            values={"controller": {"replica": 3}})

    with pytest.raises(Exception, match="'replica' was unexpected"):
        pulumi.runtime.test(program)()
    assert len(mocks.rejections) == 1
    mocks.rejections.clear()


def test_controller_replicas_are_validated() -> None:
    with pytest.raises(ValueError, match="controller_replicas must be >= 1"):
        ArgoRolloutsArgs(controller_replicas=0)


def test_the_controller_matches_the_crd_schemas_the_tests_use() -> None:
    # The schemas are those of the v1.9 line (after v1.9.1); the controller is pinned to that line.
    readme = (schema_dir().parent / "README.md").read_text()
    assert "after v1.9.1" in readme
    assert argo_rollouts.CONTROLLER_VERSION.startswith("v1.9.")
