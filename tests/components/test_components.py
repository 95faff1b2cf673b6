"""Components on their own: Args validation (no mocks needed) and resource tests under mocks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pulumi
import pytest
import yaml

from components import (
    ContainerRegistry,
    ContainerRegistryArgs,
    KubernetesClusterArgs,
    ModelImageArgs,
    ModelService,
    ModelServiceArgs,
    ModelStore,
    ModelStoreArgs,
)
from components.cluster import NetworkPolicy
from components.kubeconfig import KubeconfigError, KubeloginMode, convert_kubeconfig
from components.roles import PrincipalType
from components.service import CanaryArgs
from components.store import StorageSku
from components.testing import LOAD_BALANCER_IP, RecordingMocks, exec_kubeconfig

ROOT = Path(__file__).resolve().parents[2]
PINNED = "acr.azurecr.io/modelship/digits:r1-digits-1@sha256:" + "a" * 64
ROLLOUT = "kubernetes:argoproj.io/v1alpha1:Rollout"
CANARY = CanaryArgs(prometheus_url="https://amw-1.westeurope.prometheus.monitor.azure.com",
                    analysis_client_id="analysis-client-id")


def service_args(**overrides: object) -> ModelServiceArgs:
    values: dict = {"image": PINNED, "model_name": "digits", "model_version": "1.0.0",
                    "dns_label": "digits-dev", "location": "westeurope", "canary": CANARY}
    return ModelServiceArgs(**{**values, **overrides})


# -- Args validation --------------------------------------------------------------------------

def test_args_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="pinned by digest"):
        service_args(image="acr.azurecr.io/modelship/digits:latest")
    with pytest.raises(ValueError, match="replicas must be >= 2"):
        service_args(replicas=1)
    with pytest.raises(ValueError, match=r"max_replicas \(2\) must be >= replicas \(3\)"):
        service_args(replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="min_count <= max_count"):
        KubernetesClusterArgs(resource_group_name="rg", cluster_name="c", location="l",
                              min_count=4, max_count=2, deployer_principal_type="User")
    for mode in ("devicecode", "interactive"):
        expected = rf"kubelogin_mode '{mode}' is not allowed; use a non-interactive mode: azurecli, "
        with pytest.raises(ValueError, match=expected + "workloadidentity, spn, msi"):
            KubernetesClusterArgs(resource_group_name="rg", cluster_name="c", location="l",
                                  kubelogin_mode=mode, deployer_principal_type="User")
    with pytest.raises(ValueError, match="dns_label '9digits' is not an Azure DNS name label"):
        service_args(dns_label="9digits")
    with pytest.raises(ValueError, match="retention_days must be 1-365"):
        ModelStoreArgs(resource_group_name="rg", account_name="a", location="l", retention_days=0,
                       deployer_principal_type="User")
    # pulumi-azure-native would send principalType User, which ARM refuses for a pipeline identity.
    for args_type in (ModelStoreArgs, ContainerRegistryArgs, KubernetesClusterArgs):
        with pytest.raises(ValueError, match="deployer_principal_type must be one of User, ServicePrincipal"):
            args_type("rg", "name01", "l")
    with pytest.raises(ValueError, match="platform 'linux/z80'"):
        ModelImageArgs(login_server="x", repository="r", tag="t", context="app",
                       dockerfile="app/Dockerfile", platform="linux/z80")


# -- kubeconfig conversion --------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "expected"), [
    ("azurecli", ["get-token", "--login", "azurecli", "--server-id", "6dae42f8-4368-4678-94ff-3960e28e3630",
                  "--environment", "AzurePublicCloud"]),
    ("workloadidentity", ["get-token", "--login", "workloadidentity", "--server-id",
                          "6dae42f8-4368-4678-94ff-3960e28e3630", "--tenant-id",
                          "11111111-2222-3333-4444-555555555555", "--environment", "AzurePublicCloud"]),
])
def test_kubeconfig_conversion_drops_device_code(mode: str, expected: list[str]) -> None:
    converted = yaml.safe_load(convert_kubeconfig(exec_kubeconfig(), mode))
    exec_ = converted["users"][0]["user"]["exec"]
    assert exec_["args"] == expected
    assert exec_["interactiveMode"] == "Never"
    assert converted["clusters"] == yaml.safe_load(exec_kubeconfig())["clusters"]


def test_kubeconfig_conversion_rejects_garbage() -> None:
    with pytest.raises(KubeconfigError, match="no users list"):
        convert_kubeconfig("apiVersion: v1\n", "azurecli")
    broken = exec_kubeconfig().replace("--server-id, ", "")
    with pytest.raises(KubeconfigError, match="has no --server-id"):
        convert_kubeconfig(broken, "azurecli")


# -- resource tests (each one is @pulumi.runtime.test) ---------------------------------------

@pulumi.runtime.test
def test_model_store_outputs() -> pulumi.Output:
    store = ModelStore("store", ModelStoreArgs(resource_group_name="rg", account_name="modelsdev01",
                                               location="westeurope", container_name="models",
                                               deployer_principal_type="ServicePrincipal"))

    def check(values: list) -> None:
        name, endpoint, container = values
        assert name == "modelsdev01"
        assert endpoint == "https://modelsdev01.blob.core.windows.net/"
        assert container == "models"

    return pulumi.Output.all(store.account_name, store.blob_endpoint, store.container_name).apply(check)


@pulumi.runtime.test
def test_registry_without_push_grant_makes_no_role_assignment(mocks: RecordingMocks) -> pulumi.Output:
    registry = ContainerRegistry("reg", ContainerRegistryArgs(
        resource_group_name="rg", registry_name="modelshipacr01", location="westeurope",
        grant_push_to_deployer=False))

    assert registry.push_assignment is None

    def check(server: str) -> None:
        assert server == "modelshipacr01.azurecr.io"
        assert not [r for r in mocks.resources if r.type == "azure-native:authorization:RoleAssignment"]
        assert not mocks.invokes

    return registry.login_server.apply(check)


@pulumi.runtime.test
def test_model_service_alone_with_a_given_provider(mocks: RecordingMocks) -> pulumi.Output:
    provider = pulumi.ProviderResource("kubernetes", "k8s", {"kubeconfig": "{}"})
    options: dict[str, pulumi.ResourceOptions] = {}

    def record(args: pulumi.ResourceTransformationArgs) -> None:
        options[args.type_] = args.opts

    service = ModelService("svc", service_args(namespace="team-a", replicas=3, max_replicas=6),
                           opts=pulumi.ResourceOptions(providers=[provider], transformations=[record]))
    # Once created, the replica count belongs to the HPA: `up` must not scale it back.
    assert options[ROLLOUT].ignore_changes == ["spec.replicas"]

    def check(values: list) -> None:
        url, ip, _rollout_id, _hpa_id = values
        assert url == "http://digits-dev.westeurope.cloudapp.azure.com"
        assert ip == LOAD_BALANCER_IP
        rollout = next(r for r in mocks.resources if r.type == ROLLOUT)
        assert rollout.inputs["spec"]["replicas"] == 3  # for the creation only, see ignore_changes
        assert rollout.inputs["spec"]["template"]["spec"]["containers"][0]["image"] == PINNED
        assert rollout.inputs["metadata"]["namespace"] == "team-a"
        assert "pulumi:providers:kubernetes::k8s::" in rollout.provider
        assert not [r for r in mocks.resources if r.type == "azure-native:dns:RecordSet"]
        hpa = next(r for r in mocks.resources if r.type.endswith("HorizontalPodAutoscaler")).inputs["spec"]
        assert hpa["minReplicas"] == 3 and hpa["maxReplicas"] == 6

    # Waiting on the Rollout's and the HPA's ids too: the check reads what the mocks recorded for them.
    return pulumi.Output.all(service.url, service.public_ip, service.rollout.id, service.hpa.id).apply(check)


# -- the guard against a forgotten decorator ----------------------------------------------------

def test_a_resource_test_without_the_decorator_fails(tmp_path: Path) -> None:
    test_file = tmp_path / "test_forgot.py"
    test_file.write_text(textwrap.dedent('''
        import pulumi
        from components import ModelStore, ModelStoreArgs
        from components.testing import install_mocks

        def test_forgot_decorator():
            install_mocks()
            store = ModelStore("s", ModelStoreArgs(resource_group_name="rg", account_name="bad",
                                                   location="l", grant_read_to_deployer=False))
            return store.account_name.apply(lambda n: (_ for _ in ()).throw(AssertionError(n)))
    '''))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml"),
         "--rootdir", str(ROOT), str(test_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "PytestReturnNotNoneWarning" in result.stdout, result.stdout
    assert "1 failed" in result.stdout


# -- typed choices ------------------------------------------------------------------------------

@pytest.mark.parametrize(("make", "message"), [
    (lambda: ModelStoreArgs("rg", "name01", "l", sku="Premium_LRS", deployer_principal_type="User"),
     "sku must be one of Standard_LRS, Standard_ZRS"),
    (lambda: ContainerRegistryArgs("rg", "name01", "l", sku="Gold", deployer_principal_type="User"),
     "sku must be one of Basic, Standard, Premium, got 'Gold'"),
    (lambda: KubernetesClusterArgs("rg", "c", "l", network_policy="cillium", deployer_principal_type="User"),
     "network_policy must be one of cilium, azure, calico, got 'cillium'"),
])
def test_choices_outside_the_enum_are_refused(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_choices_given_as_strings_become_the_components_enums() -> None:
    store = ModelStoreArgs("rg", "name01", "l", sku="Standard_ZRS",
                           deployer_principal_type="ServicePrincipal")
    assert store.sku is StorageSku.STANDARD_ZRS
    assert store.deployer_principal_type is PrincipalType.SERVICE_PRINCIPAL
    cluster = KubernetesClusterArgs("rg", "c", "l", network_policy="azure", kubelogin_mode="msi",
                                    deployer_principal_type="User")
    assert cluster.network_policy is NetworkPolicy.AZURE and cluster.kubelogin_mode is KubeloginMode.MSI
