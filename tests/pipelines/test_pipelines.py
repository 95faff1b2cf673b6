"""The pipeline files: schema-valid (check-jsonschema's vendored schemas, no network) and wired
the way users rely on: tests before preview, preview and up with the policy pack, deploy only from
main, Azure through federated identity with no stored secret, model pulled before ``pulumi up``,
smoke test after it, rollback when the smoke test fails."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
AZURE = REPO / "azure-pipelines.yml"
WORKFLOW = REPO / ".github" / "workflows" / "delivery.yml"
SCRIPT = REPO / "scripts" / "cloud-deploy.sh"
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))


def _check(schema: str, path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *extra,
                           str(path)], capture_output=True, text=True, timeout=120)


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# --- schemas ---------------------------------------------------------------------------------


def test_azure_pipeline_matches_the_vendored_schema():
    proc = _check("vendor.azure-pipelines", AZURE, "--regex-variant", "python")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_github_workflows_match_the_vendored_schema(path):
    assert WORKFLOW in WORKFLOWS
    proc = _check("vendor.github-workflows", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_check_rejects_a_misspelled_task_input(tmp_path):
    """The validation above can fail: a typo in AzureCLI@2's inputs is caught."""
    bad = tmp_path / "azure-pipelines.yml"
    bad.write_text(AZURE.read_text().replace("addSpnToEnvironment:", "addSpnToEnviroment:"))
    proc = _check("vendor.azure-pipelines", bad, "--regex-variant", "python")
    assert proc.returncode == 1
    assert "Schema validation errors" in proc.stdout + proc.stderr


def test_schema_check_rejects_a_workflow_job_without_runner(tmp_path):
    bad = tmp_path / "delivery.yml"
    bad.write_text(WORKFLOW.read_text().replace("runs-on:", "run-on:"))
    proc = _check("vendor.github-workflows", bad)
    assert proc.returncode == 1


# --- Azure Pipelines ---------------------------------------------------------------------------


def _steps(job: dict) -> list[dict]:
    if "steps" in job:
        return job["steps"]
    return job["strategy"]["runOnce"]["deploy"]["steps"]


def test_azure_triggers_on_main_and_pull_requests_to_main():
    doc = _load(AZURE)
    assert doc["trigger"]["branches"]["include"] == ["main"]
    assert doc["pr"]["branches"]["include"] == ["main"]


def test_azure_deploy_runs_only_on_main_after_verify():
    stages = {s["stage"]: s for s in _load(AZURE)["stages"]}
    assert list(stages) == ["Verify", "Deploy", "Prod"]
    prod = stages["Prod"]
    assert prod["dependsOn"] == "Deploy" and prod["condition"] == stages["Deploy"]["condition"]
    (job,) = prod["jobs"]
    assert job["environment"] == "modelship-${{ variables.prodStack }}"  # its approval check
    digest = "$[ stageDependencies.Deploy.deploy.outputs['deploy.release.digest'] ]"
    assert job["variables"] == [{"name": "releaseDigest", "value": digest}]
    # The digest comes from the Deploy job's step named `release`, as an output variable.
    (release,) = [s for s in _steps(stages["Deploy"]["jobs"][0]) if s.get("name") == "release"]
    assert "##vso[task.setvariable variable=digest;isOutput=true]" in release["inputs"]["inlineScript"]
    deploy = stages["Deploy"]
    assert deploy["dependsOn"] == "Verify"
    condition = deploy["condition"]
    assert "succeeded()" in condition
    assert "eq(variables['Build.SourceBranch'], 'refs/heads/main')" in condition
    assert "ne(variables['Build.Reason'], 'PullRequest')" in condition
    # The only `pulumi up` is in Deploy; Verify only previews.
    verify_text = yaml.safe_dump(stages["Verify"])
    assert "cloud-deploy.sh preview" in verify_text
    assert not re.search(r"cloud-deploy\.sh (deploy|rollback|record-good)|pulumi up", verify_text)


def test_azure_verify_runs_make_test_before_preview():
    (job,) = _load(AZURE)["stages"][0]["jobs"]
    scripts = [s.get("script") or s.get("inputs", {}).get("inlineScript", "") for s in _steps(job)]
    test_at = next(i for i, s in enumerate(scripts) if s.strip() == "make test")
    preview_at = next(i for i, s in enumerate(scripts) if "cloud-deploy.sh preview" in s)
    assert test_at < preview_at


def test_azure_uses_workload_identity_through_azurecli_and_no_secret():
    doc = _load(AZURE)
    azure_steps = [s for stage in doc["stages"] for job in stage["jobs"] for s in _steps(job)
                   if s.get("task") == "AzureCLI@2"]
    assert len(azure_steps) == 4
    connections = {s["inputs"]["azureSubscription"] for s in azure_steps}
    assert connections == {"$(azureServiceConnection)", "$(azureServiceConnectionProd)"}
    # Every step that runs Pulumi's azure-native provider hands it the federated token; the step
    # that only reads the state (the release digest) needs the az session alone.
    for step in [s for s in azure_steps if s.get("name") != "release"]:
        inputs = step["inputs"]
        assert inputs["azureSubscription"].startswith("$(azureServiceConnection")
        assert inputs["addSpnToEnvironment"] is True
        script = inputs["inlineScript"]
        assert "ARM_USE_OIDC=true" in script
        assert 'ARM_OIDC_TOKEN="$idToken"' in script
        assert 'ARM_CLIENT_ID="$servicePrincipalId"' in script
    text = AZURE.read_text().lower()
    assert not re.search(r"client_?secret|servicePrincipalKey|password|AZURE_STORAGE_KEY", text, re.I)


def test_azure_deploy_job_is_an_environment_deployment_with_full_history():
    (job,) = _load(AZURE)["stages"][1]["jobs"]
    assert job["environment"] == "modelship-${{ variables.pulumiStack }}"  # a template expression
    checkout = _steps(job)[0]
    assert checkout["checkout"] == "self" and checkout["fetchDepth"] == "0"  # rollback needs history
    assert any("cloud-deploy.sh deploy" in s.get("inputs", {}).get("inlineScript", "") for s in _steps(job))


# --- GitHub Actions ----------------------------------------------------------------------------


def _workflow() -> dict:
    doc = _load(WORKFLOW)
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


def test_github_triggers_and_least_privilege():
    doc = _workflow()
    assert doc["on"]["pull_request"]["branches"] == ["main"]
    assert doc["on"]["push"]["branches"] == ["main"]
    assert doc["permissions"] == {"contents": "read"}
    jobs = doc["jobs"]
    assert "permissions" not in jobs["test"]  # tests need no cloud identity
    for name in ("preview", "deploy"):
        assert jobs[name]["permissions"]["id-token"] == "write", name
    assert jobs["preview"]["permissions"]["pull-requests"] == "write"  # the preview comment
    assert "pull-requests" not in jobs["deploy"]["permissions"]


def test_github_deploy_only_on_push_to_main_after_test_and_preview_only_on_prs():
    deploy = _workflow()["jobs"]["deploy"]
    assert deploy["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert deploy["needs"] == "test"
    assert deploy["environment"] == "dev"
    preview = _workflow()["jobs"]["preview"]
    assert preview["needs"] == "test" and preview["if"] == "github.event_name == 'pull_request'"


def _uses(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == action]


def test_github_preview_posts_on_the_pr_with_the_policy_pack():
    job = _workflow()["jobs"]["preview"]
    (step,) = [s for s in _uses(job, "pulumi/actions") if "command" in s["with"]]
    assert step["with"]["command"] == "preview"
    assert step["with"]["comment-on-pr"] is True
    assert step["with"]["policyPacks"] == "policy"


def test_github_logs_in_to_azure_with_oidc_only():
    doc = _workflow()
    for name in ("preview", "deploy"):
        (login,) = _uses(doc["jobs"][name], "azure/login")
        assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}, "no creds/secret"
    assert doc["env"]["ARM_USE_OIDC"] == "true"
    assert not re.search(r"client-secret|AZURE_CREDENTIALS|ARM_CLIENT_SECRET", WORKFLOW.read_text())


def test_github_deploy_order_fetch_up_smoke_then_record_or_rollback():
    steps = _workflow()["jobs"]["deploy"]["steps"]

    def index(pred) -> int:
        return next(i for i, s in enumerate(steps) if pred(s))

    fetch = index(lambda s: "cloud-deploy.sh fetch-model" in s.get("run", ""))
    up = index(lambda s: s.get("with", {}).get("command") == "up")
    smoke = index(lambda s: s.get("id") == "smoke")
    record = index(lambda s: "cloud-deploy.sh record-good" in s.get("run", ""))
    rollback = index(lambda s: "cloud-deploy.sh rollback" in s.get("run", ""))
    assert fetch < up < smoke < record < rollback
    assert steps[up]["with"]["policyPacks"] == "policy"
    assert "if" not in steps[record]  # runs only when everything before it passed
    assert steps[rollback]["if"] == "failure() && steps.smoke.outcome == 'failure'"
    assert steps[0]["with"]["fetch-depth"] == 0


def test_both_pipelines_pin_the_same_pulumi_cli_as_the_sdk():
    from importlib.metadata import version

    sdk = version("pulumi")
    assert {"name": "pulumiVersion", "value": sdk} in _load(AZURE)["variables"]
    assert _workflow()["env"]["PULUMI_VERSION"] == sdk
