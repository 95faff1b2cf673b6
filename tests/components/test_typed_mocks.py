"""The recording mocks reject what the installed SDKs, Azure and Kubernetes would.

Each check is made to fire here on a deliberately broken input; the whole program passing them is
``test_whole_program_passes_the_typed_mocks``.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pulumi
import pytest
from pulumi_azure_native import storage

from components.sdk_types import SdkTypeError, args_class, check_inputs
from components.testing import MockRejectedError, RecordingMocks, run_stack
from tests.components.conftest import make_project, make_settings


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> list:
    root = make_project(tmp_path_factory.mktemp("typed") / "project", dockerignore=True)
    return [r for r in run_stack(make_settings(), project_root=root) if r.custom]


def _count_keys(value: object) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_count_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_keys(v) for v in value)
    return 0


def test_whole_program_passes_the_typed_mocks(recorded: list) -> None:
    """Every custom resource was checked (the run would have raised otherwise); count what."""
    types = {r.type for r in recorded}
    assert len(recorded) >= 18 and len(types) >= 15, sorted(types)  # the stack of issue 9, at least
    assert all(check_inputs(r.type, r.inputs) == [] for r in recorded)
    assert sum(_count_keys(r.inputs) for r in recorded) > 250  # nested keys, all typed


def _one(recorded: list, suffix: str):
    return next(r for r in recorded if r.type.endswith(suffix))


SDK_CASES = [
    ("HorizontalPodAutoscaler", lambda i: i["spec"]["behavior"]["scaleUp"].update(stabilizationWindow=60),
     r"spec\.behavior\.scaleUp\.stabilizationWindow: unknown property"),
    ("ServiceAccount", lambda i: i.update(automountServiceAccountTokens=False),
     "automountServiceAccountTokens: unknown property"),
    ("StorageAccount", lambda i: i.update(allowBlobPublicAcess=False),
     "allowBlobPublicAcess: unknown property"),
    ("StorageAccount", lambda i: i.update(minimumTlsVersion="TLS1_4"),
     "minimumTlsVersion: 'TLS1_4' is not an allowed"),
    ("ManagedCluster", lambda i: i["networkProfile"].update(networkPolicy="cillium"),
     "networkPolicy: 'cillium' is not an allowed value; allowed: azure, calico, cilium, none"),
    ("ManagedCluster", lambda i: i["agentPoolProfiles"][0].update(count="two"), r"count: expected int"),
    ("Image", lambda i: i["cacheTo"][0]["registry"].update(mode="maximum"), "mode: 'maximum' is not"),
    ("Service", lambda i: i.update(kind="Services"), "kind: 'Services' must be one of"),
]


@pytest.mark.parametrize(("suffix", "mutate", "expected"), SDK_CASES)
def test_sdk_types_reject_unknown_keys_enum_values_and_wrong_types(recorded, suffix, mutate, expected):
    resource = _one(recorded, suffix)
    inputs = copy.deepcopy(resource.inputs)
    mutate(inputs)
    errors = check_inputs(resource.type, inputs)
    assert errors and any(re.search(expected, e) for e in errors), errors


def test_a_token_no_sdk_declares_is_an_error() -> None:
    with pytest.raises(SdkTypeError, match="not declared by any installed Pulumi SDK"):
        args_class("azure-native:storage:StorageAcount")
    assert args_class("kubernetes:argoproj.io/v1alpha1:Rollout") is None  # a CRD: its schema decides


def test_a_misspelled_nested_key_in_a_component_fails_registration(mocks: RecordingMocks) -> None:
    def program() -> None:
        storage.StorageAccount("typo", resource_group_name="rg", kind="StorageV2",
                               sku={"nmae": "Standard_LRS"})  # a dict input lets the typo through Python

    with pytest.raises(Exception, match=r"sku\.nmae: unknown property of SkuArgs; allowed: name"):
        pulumi.runtime.test(program)()
    assert mocks.rejections == ["azure-native:storage:StorageAccount typo: sku.nmae: unknown property of "
                                "SkuArgs; allowed: name"]
    mocks.rejections.clear()  # seen; the fixture fails any test that leaves one behind


def test_kubernetes_objects_are_validated_strictly(recorded: list) -> None:
    mocks = RecordingMocks()
    service = _one(recorded, "core/v1:Service")
    inputs = copy.deepcopy(service.inputs)
    del inputs["spec"]["ports"][0]["port"]  # typed keys all fine; the API requires a port
    problems = mocks.problems(service.type, "svc", inputs)
    assert any("kubernetes-validate 1.34.0 strict" in p for p in problems), problems


def test_run_stack_raises_what_the_mocks_rejected(project: Path) -> None:
    with pytest.raises(MockRejectedError, match="UnmatchedPrincipalType"):
        run_stack(make_settings(deployerPrincipalType="User"), project_root=project)


def test_invoke_arguments_are_checked_against_the_sdk_function() -> None:
    from components.sdk_types import check_invoke

    token = "azure-native:containerservice:listManagedClusterUserCredentials"
    assert check_invoke(token, {"resourceGroupName": "rg", "resourceName": "aks", "format": "exec"}) == []
    (error,) = check_invoke(token, {"resourceGroupName": "rg", "clusterName": "aks"})
    assert "clusterName: unknown argument of list_managed_cluster_user_credentials" in error
    assert "resource_name" in error
    assert check_invoke("azure-native:authorization:getClientConfig", {"x": 1})


def test_a_custom_resource_is_checked_against_its_crd(mocks: RecordingMocks) -> None:
    import pulumi_kubernetes as k8s

    def program() -> None:
        k8s.apiextensions.CustomResource(
            "typo", api_version="argoproj.io/v1alpha1", kind="Rollout",
            metadata={"name": "digits"},
            spec={"selector": {"matchLabels": {"app": "x"}},
                  "template": {"metadata": {"labels": {"app": "x"}}},
                  "strategy": {"canary": {"steps": [{"setWieght": 10}]}}})

    with pytest.raises(Exception, match="setWieght"):
        pulumi.runtime.test(program)()
    assert len(mocks.rejections) == 1 and "CRD schema" in mocks.rejections[0], mocks.rejections
    mocks.rejections.clear()
