"""The deploying identity's principal type: configured, or detected as a pipeline or ``az login``
would present it; the role assignments to it carry that type (ARM refuses a mismatch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.deployer import PrincipalTypeError, resolve_principal_type
from components.testing import CLIENT_OBJECT_ID, MockRejectedError, by_type, run_stack
from tests.components.conftest import make_settings


def _az_profile(tmp_path: Path, user_type: str) -> dict[str, str]:
    profile = {"subscriptions": [
        {"id": "other", "isDefault": False, "user": {"name": "x", "type": "user"}},
        {"id": "sub", "isDefault": True, "user": {"name": "me", "type": user_type}},
    ]}
    # az writes the file with a byte order mark.
    (tmp_path / "azureProfile.json").write_text(json.dumps(profile), encoding="utf-8-sig")
    return {"AZURE_CONFIG_DIR": str(tmp_path)}


def test_configured_value_wins() -> None:
    assert resolve_principal_type("User", {"ARM_CLIENT_ID": "x"}) == "User"
    assert resolve_principal_type("ServicePrincipal", {}) == "ServicePrincipal"


def test_pipelines_are_service_principals() -> None:
    assert resolve_principal_type("auto", {"ARM_CLIENT_ID": "app-id"}) == "ServicePrincipal"
    assert resolve_principal_type("auto", {"ARM_USE_MSI": "true"}) == "ServicePrincipal"


@pytest.mark.parametrize(("az_type", "expected"),
                         [("user", "User"), ("servicePrincipal", "ServicePrincipal")])
def test_az_login_account_kind(tmp_path: Path, az_type: str, expected: str) -> None:
    assert resolve_principal_type("auto", _az_profile(tmp_path, az_type)) == expected


def test_undetectable_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(PrincipalTypeError, match=r"config key 'deployerPrincipalType'.*pulumi config set"):
        resolve_principal_type("auto", {"AZURE_CONFIG_DIR": str(tmp_path)})
    with pytest.raises(PrincipalTypeError, match="allowed: auto, User, ServicePrincipal"):
        resolve_principal_type("SP", {})


@pytest.mark.parametrize("kind", ["User", "ServicePrincipal"])
def test_every_assignment_to_the_deployer_carries_its_type(project: Path, kind: str) -> None:
    run = run_stack(make_settings(deployerPrincipalType=kind), project_root=project,
                    deployer_principal_type=kind)
    assignments = by_type(run, "azure-native:authorization:RoleAssignment")
    to_deployer = [a for a in assignments if a.inputs["principalId"] == CLIENT_OBJECT_ID]
    # AcrPush, AKS RBAC Cluster Admin, Storage Blob Data Reader, Contributor on the release records
    assert len(to_deployer) == 4
    assert {a.inputs["principalType"] for a in to_deployer} == {kind}


def test_a_person_config_in_a_pipeline_is_rejected_like_arm_does(project: Path) -> None:
    """Blocker 1: principal type User for a service principal is refused (UnmatchedPrincipalType)."""
    with pytest.raises(MockRejectedError, match="UnmatchedPrincipalType"):
        run_stack(make_settings(deployerPrincipalType="User"), project_root=project,
                  deployer_principal_type="ServicePrincipal")
