"""The Rollout and AnalysisTemplate: generated from the one analysis definition, valid per their CRDs.

Validation is strict like ``kubectl apply --validate=strict`` (:mod:`components.crd_schemas`): a
misspelled key fails.
"""

from __future__ import annotations

import copy

import pytest

from components import crd_schemas
from components.rollout import analysis_command, analysis_template, canary_strategy, rollout
from modelserver.canary.__main__ import main as analysis_cli
from modelship_contract.canary import DEFAULT

SCHEMAS = crd_schemas.schema_dir()
IMAGE = "modelshipacr.azurecr.io/modelship/digits@sha256:" + "a" * 64
PROMETHEUS = "https://amw-modelship-abcd.westeurope.prometheus.monitor.azure.com"
LABELS = {"app.kubernetes.io/name": "modelship", "app.kubernetes.io/instance": "digits"}
POD_TEMPLATE = {
    "metadata": {"labels": LABELS},
    "spec": {"automountServiceAccountToken": False,
             "containers": [{"name": "server", "image": IMAGE,
                             "ports": [{"name": "http", "containerPort": 8080}]}]},
}


def errors(crd_file: str, obj: dict) -> list[str]:
    assert crd_schemas.CRD_FILES[(obj["apiVersion"], obj["kind"])] == crd_file
    return crd_schemas.errors(obj)


def template() -> dict:
    return analysis_template("digits-canary", "modelship", IMAGE, "modelship-analysis", PROMETHEUS, DEFAULT)


def test_the_analysis_template_is_valid_per_its_crd() -> None:
    assert errors("analysis-template-crd.yaml", template()) == []


def test_the_rollout_is_valid_per_its_crd_and_has_no_replica_count() -> None:
    obj = rollout("digits", "modelship", LABELS, POD_TEMPLATE, DEFAULT, "digits-canary")
    assert errors("rollout-crd.yaml", obj) == []
    assert "replicas" not in obj["spec"]  # the HPA owns it


def test_a_misspelled_key_is_refused() -> None:
    obj = rollout("digits", "modelship", LABELS, POD_TEMPLATE, DEFAULT, "digits-canary")
    bad = copy.deepcopy(obj)
    bad["spec"]["strategy"]["canary"]["steps"][0] = {"setWieght": 10}
    assert any("setWieght" in e for e in errors("rollout-crd.yaml", bad))
    bad = copy.deepcopy(template())
    bad["spec"]["metrics"][0]["provider"]["job"]["spec"]["backofLimit"] = 0
    assert any("backofLimit" in e for e in errors("analysis-template-crd.yaml", bad))


def test_steps_follow_the_definition_with_an_analysis_after_each_hold() -> None:
    steps = canary_strategy(DEFAULT, "t")["canary"]["steps"]
    weights = [s["setWeight"] for s in steps if "setWeight" in s]
    assert weights == [s.weight for s in DEFAULT.steps]
    for i, step in enumerate(DEFAULT.steps):
        assert steps[3 * i:3 * i + 3] == [
            {"setWeight": step.weight}, {"pause": {"duration": f"{step.hold_seconds}s"}},
            {"analysis": {"templates": [{"templateName": "t"}], "args": [
                {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
                {"name": "stable-hash", "valueFrom": {"podTemplateHashValue": "Stable"}}]}}]


def test_the_job_runs_the_analysis_cli_with_workload_identity_and_no_secret() -> None:
    job = template()["spec"]["metrics"][0]["provider"]["job"]["spec"]
    pod = job["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["spec"]["serviceAccountName"] == "modelship-analysis"
    container = pod["spec"]["containers"][0]
    assert container["image"] == IMAGE
    assert "env" not in container and "envFrom" not in container and "volumes" not in pod["spec"]
    assert job["backoffLimit"] == 0 and job["activeDeadlineSeconds"] > DEFAULT.max_wait_seconds


def test_the_job_command_is_one_the_analysis_cli_accepts(capsys) -> None:
    # Argo substitutes the args; with real values the CLI must parse it (exit 4: nothing to reach here).
    command = [a.replace("{{args.canary-hash}}", "abc").replace("{{args.stable-hash}}", "def")
               for a in analysis_command(DEFAULT, "http://127.0.0.1:1")]
    assert command[:3] == ["python3", "-m", "modelserver.canary"]
    args = [a for a in command[3:] if a not in ("azure-workload-identity", "--auth")]
    args += ["--wait-seconds", "0"]
    assert analysis_cli(args) == 4
    assert "cannot reach Prometheus" in capsys.readouterr().err


@pytest.mark.parametrize(("api_version", "kind"), sorted(crd_schemas.CRD_FILES))
def test_the_schemas_are_present(api_version: str, kind: str) -> None:
    assert crd_schemas.validator(api_version, kind).schema["type"] == "object"
    assert (SCHEMAS / crd_schemas.CRD_FILES[(api_version, kind)]).is_file()


def test_an_unknown_kind_has_no_schema() -> None:
    with pytest.raises(crd_schemas.CrdSchemaError, match=r"no CRD schema for .*v1alpha1 Experiment"):
        crd_schemas.errors({"apiVersion": "argoproj.io/v1alpha1", "kind": "Experiment"})
