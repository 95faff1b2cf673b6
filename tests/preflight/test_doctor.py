"""``modelship-doctor`` against stand-in ``az``/``pulumi``/``docker``/``kubelogin`` on PATH: the
real CLI entry point, real argument parsing in the stand-ins, every call recorded."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.components.conftest import write_model
from tests.preflight.fakes import FAKE_AZ, FAKE_DOCKER, FAKE_KUBELOGIN, FAKE_PULUMI

REPO = Path(__file__).resolve().parents[2]
SUB = "00000000-1111-2222-3333-444444444444"
SP_OBJECT = "5e5e5e5e-0000-1111-2222-333333333333"
KEY = "https://modelship-kv.vault.azure.net/keys/pulumi"


def _healthy() -> dict:
    return {
        "account": {"id": SUB, "tenantId": "t",
                    "user": {"name": "app-client-id", "type": "servicePrincipal"}},
        "object_id": SP_OBJECT,
        "roles": [{"roleDefinitionName": "Contributor", "scope": f"/subscriptions/{SUB}"},
                  {"roleDefinitionName": "Role Based Access Control Administrator",
                   "scope": f"/subscriptions/{SUB}"}],
        "keys": [KEY], "containers": ["modelshipstate/pulumi-state"],
        "builders": {"modelship": "docker-container"},
    }


@pytest.fixture
def doctor(tmp_path: Path):
    """run(state, env=..., path_tools=...) -> (exit code, stdout, calls)."""
    project = tmp_path / "project"
    (project / "app").mkdir(parents=True)
    (project / "app" / "Dockerfile").write_text("FROM scratch\n")
    stack_file = (REPO / "Pulumi.dev.yaml").read_text()
    (project / "Pulumi.dev.yaml").write_text(stack_file + "encryptedkey: ZmFrZQ==\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("az", FAKE_AZ), ("pulumi", FAKE_PULUMI), ("docker", FAKE_DOCKER),
                       ("kubelogin", FAKE_KUBELOGIN)):
        exe = bin_dir / name
        exe.write_text(text.replace("#!PYTHON", f"#!{sys.executable}"))
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    calls = tmp_path / "calls.log"
    state_file = tmp_path / "state.json"

    def run(state: dict, *args: str, missing: tuple[str, ...] = (), **env: str):
        for name in missing:
            (bin_dir / name).unlink()
        state_file.write_text(json.dumps(state))
        calls.write_text("")
        base = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path), "CALLS": str(calls),
                "FAKE_STATE": str(state_file), "ARM_CLIENT_ID": "app-client-id",
                "PULUMI_BACKEND_URL": "azblob://pulumi-state?storage_account=modelshipstate",
                "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-m", "preflight", "--stack", "dev", "--project", str(project),
                               *args], env={**base, **env}, capture_output=True, text=True, timeout=120,
                              cwd=REPO)
        return proc.returncode, proc.stdout, calls.read_text().splitlines()

    run.project = project  # type: ignore[attr-defined]
    return run


def _line(out: str, check: str) -> str:
    return "\n".join(line for line in out.splitlines() if f" {check} " in f" {line} ")


def test_a_ready_pipeline_identity_passes_every_check(doctor) -> None:
    rc, out, calls = doctor(_healthy())
    assert rc == 0, out
    assert "FAIL" not in out
    assert "principalType ServicePrincipal" in out
    assert f"az role assignment list --scope /subscriptions/{SUB} --include-inherited --output json" in calls
    assert f"az keyvault key show --id {KEY} --output json" in calls
    assert "docker buildx inspect modelship" in calls
    assert "az storage account check-name --name modelshipdevmodels01 --output json" in calls
    assert "warn model" in out  # first deploy: no model yet is fine, with what to do after


def test_not_signed_in_and_no_kubelogin_name_the_fix(doctor) -> None:
    state = _healthy()
    state["account"] = None
    rc, out, _ = doctor(state, missing=("kubelogin",))
    assert rc == 1
    assert "FAIL kubelogin" in out and "fix: az aks install-cli" in out
    assert "FAIL signed in" in out and "fix: az login" in out


def test_missing_roles_give_the_assignment_command(doctor) -> None:
    state = _healthy()
    # A role on a resource group is no use: the stack creates its own group.
    state["roles"] = [{"roleDefinitionName": "Contributor",
                       "scope": f"/subscriptions/{SUB}/resourceGroups/modelship-dev"},
                      {"roleDefinitionName": "Owner", "scope": f"/subscriptions/{SUB}",
                       "principalId": "someone-else"}]
    rc, out, _ = doctor(state)
    assert rc == 1
    assert f"fix: az role assignment create --assignee {SP_OBJECT} --role 'Contributor' " \
           f"--scope /subscriptions/{SUB}" in out
    assert "--role 'Role Based Access Control Administrator'" in out


def test_taken_names_and_labels_fail_with_the_config_command(doctor) -> None:
    state = _healthy()
    state["taken"] = ["modelshipdevacr01"]
    state["dns_taken"] = ["modelship-dev-digits"]
    rc, out, _ = doctor(state)
    assert rc == 1
    assert "registryName 'modelshipdevacr01' is taken" in out
    assert "fix: pulumi config set --stack dev registryName" in out
    assert "dnsLabel 'modelship-dev-digits' is taken in westeurope" in out
    state["own"] = ["modelshipdevacr01"]  # taken by this very stack: fine
    state["dns_taken"] = []
    rc, out, _ = doctor(state)
    assert rc == 0, out


def test_secrets_provider_and_key_access(doctor) -> None:
    stack_file = doctor.project / "Pulumi.dev.yaml"
    state = _healthy()
    state["keys"] = []
    rc, out, _ = doctor(state)
    assert rc == 1 and "cannot read the key" in out and "Key Vault Crypto User" in out
    stack_file.write_text("\n".join(line for line in stack_file.read_text().splitlines()
                                    if not line.startswith("secretsprovider")))
    rc, out, _ = doctor(_healthy())
    assert rc == 1 and "would ask for a passphrase" in out and "change-secrets-provider" in out


def test_builder_on_the_docker_driver_is_refused(doctor) -> None:
    state = _healthy()
    state["builders"] = {"modelship": "docker"}
    rc, out, _ = doctor(state)
    assert rc == 1 and "refuses the registry cache export" in out
    rc, out, calls = doctor(state, "--for", "preview")  # a preview builds nothing
    assert rc == 0, out
    assert "docker buildx inspect modelship" not in calls


def test_a_deployed_stack_needs_the_model_fetched(doctor) -> None:
    state = _healthy()
    state["outputs"] = {"blobEndpoint": "https://modelshipdevmodels01.blob.core.windows.net/"}
    state["dns_taken"] = ["modelship-dev-digits"]  # its own service holds it now
    rc, out, _ = doctor(state)
    assert rc == 1 and "would delete the deployed image and service" in out
    assert "fix: modelship-models fetch digits@production app/model" in out
    write_model(doctor.project / "app" / "model", version="1.0.0")
    rc, out, _ = doctor(state)
    assert rc == 0, out
    assert "digits@1.0.0 in app/model" in out


def test_a_person_config_with_a_pipeline_login_is_refused(doctor) -> None:
    stack_file = doctor.project / "Pulumi.dev.yaml"
    text = stack_file.read_text().replace("deployerPrincipalType: auto", "deployerPrincipalType: User")
    stack_file.write_text(text)
    rc, out, _ = doctor(_healthy())
    assert rc == 1 and "UnmatchedPrincipalType" in out


def test_bad_arguments_exit_2(doctor) -> None:
    rc, _, _ = doctor(_healthy(), "--stak", "dev")
    assert rc == 2


def test_every_failure_names_a_fix(doctor) -> None:
    """Whatever fails, the line after it says what to run."""
    state = _healthy()
    state.update(account=None, keys=[], builders={}, containers=[])
    rc, out, _ = doctor(state, missing=("kubelogin",))
    lines = out.splitlines()
    failures = [i for i, line in enumerate(lines) if line.startswith("FAIL")]
    assert rc == 1 and len(failures) >= 5
    assert all(lines[i + 1].strip().startswith("fix: ") for i in failures), out
