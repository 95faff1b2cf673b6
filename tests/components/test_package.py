"""The component package: the schema the SDK infers in-process, and construction as the provider does it."""

from __future__ import annotations

import json
import runpy
import tomllib
from pathlib import Path
from typing import Any

import pulumi
import pulumi.provider.experimental as experimental
import pulumi_kubernetes as k8s
import pytest
import yaml
from pulumi.provider.experimental.component import ComponentProvider
from pulumi.provider.server import ComponentInitError

import components
from components.package import COMPONENTS, PACKAGE
from components.rollout import ROLLOUT_TYPE as ROLLOUT
from components.testing import RecordingMocks

ROOT = Path(__file__).resolve().parents[2]
PINNED = "acr.azurecr.io/modelship/digits:r1-digits-1@sha256:" + "a" * 64


def provider() -> ComponentProvider:
    """The provider ``component_provider_host`` would serve: the SDK's analyzer runs here, no CLI."""
    return ComponentProvider(COMPONENTS, PACKAGE, None, "0.1.0")


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    served = provider().schema
    assert served is not None
    return json.loads(served)


def token(name: str) -> str:
    return f"{PACKAGE}:index:{name}"


def test_the_package_hosts_the_public_components() -> None:
    hosted = sorted(c.__name__ for c in COMPONENTS)
    public = sorted(n for n in components.__all__ if not n.endswith("Args") and n != "DnsZoneArgs")
    assert hosted == public


def test_every_component_is_a_component_resource_with_its_token(schema: dict[str, Any]) -> None:
    assert sorted(schema["resources"]) == sorted(token(c.__name__) for c in COMPONENTS)
    for spec in schema["resources"].values():
        assert spec["isComponent"] is True
        assert spec["description"]


# (component, input, expected schema fragment) - the typed inputs other languages see.
INPUTS = [
    ("ModelStore", "accountName", {"type": "string", "plain": True}),
    ("ModelStore", "resourceGroupName", {"type": "string"}),
    ("ModelStore", "sku", {"$ref": "#/types/modelship:index:StorageSku", "plain": True}),
    ("ModelStore", "retentionDays", {"type": "integer", "plain": True}),
    ("ContainerRegistry", "sku", {"$ref": "#/types/modelship:index:RegistrySku", "plain": True}),
    ("ContainerRegistry", "deployerPrincipalType", {"$ref": "#/types/modelship:index:PrincipalType",
                                                    "plain": True}),
    ("KubernetesCluster", "networkPolicy", {"$ref": "#/types/modelship:index:NetworkPolicy",
                                             "plain": True}),
    ("KubernetesCluster", "kubeloginMode", {"$ref": "#/types/modelship:index:KubeloginMode",
                                             "plain": True}),
    ("KubernetesCluster", "registryId", {"type": "string"}),
    ("KubernetesCluster", "minCount", {"type": "integer", "plain": True}),
    ("ModelImage", "buildArgs", {"type": "object", "plain": True,
                                 "additionalProperties": {"type": "string", "plain": True}}),
    ("ModelImage", "push", {"type": "boolean", "plain": True}),
    ("ModelService", "image", {"type": "string"}),
    ("ModelService", "replicas", {"type": "integer", "plain": True}),
    ("ModelService", "dnsZone", {"$ref": "#/types/modelship:index:DnsZoneArgs", "plain": True}),
]


@pytest.mark.parametrize(("component", "name", "expected"), INPUTS,
                         ids=[f"{c}.{n}" for c, n, _ in INPUTS])
def test_typed_inputs(schema: dict[str, Any], component: str, name: str, expected: dict[str, Any]) -> None:
    prop = dict(schema["resources"][token(component)]["inputProperties"][name])
    prop.pop("description", None)
    if isinstance(prop.get("additionalProperties"), dict):
        prop["additionalProperties"].pop("description", None)
    assert prop == expected


@pytest.mark.parametrize(("component", "name", "doc"), [
    ("ModelStore", "accountName", "Globally unique storage account name"),
    ("ModelService", "image", "Image reference pinned by digest"),
    ("KubernetesCluster", "kubeloginMode", "Non-interactive kubelogin mode"),
])
def test_inputs_carry_the_args_docstrings(schema: dict[str, Any], component: str, name: str,
                                          doc: str) -> None:
    assert schema["resources"][token(component)]["inputProperties"][name]["description"].startswith(doc)


@pytest.mark.parametrize(("component", "required"), [
    ("ModelStore", ["accountName", "location", "resourceGroupName"]),
    ("ContainerRegistry", ["location", "registryName", "resourceGroupName"]),
    ("KubernetesCluster", ["clusterName", "location", "resourceGroupName"]),
    ("ModelImage", ["context", "dockerfile", "loginServer", "repository", "tag"]),
    ("ModelService", ["canary", "dnsLabel", "image", "location", "modelName", "modelVersion"]),
])
def test_fields_with_a_default_are_optional(schema: dict[str, Any], component: str,
                                            required: list[str]) -> None:
    assert sorted(schema["resources"][token(component)]["requiredInputs"]) == required


@pytest.mark.parametrize(("component", "outputs"), [
    ("ModelStore", ["accountName", "blobEndpoint", "containerName"]),
    ("ContainerRegistry", ["loginServer", "registryId"]),
    ("KubernetesCluster", ["clusterName", "kubeconfig", "kubeletObjectId", "oidcIssuerUrl"]),
    ("ModelImage", ["digest", "imageRef", "taggedRef"]),
    ("ModelService", ["publicIp", "rolloutName", "url"]),
])
def test_typed_outputs(schema: dict[str, Any], component: str, outputs: list[str]) -> None:
    spec = schema["resources"][token(component)]
    assert sorted(spec["properties"]) == outputs
    for prop in spec["properties"].values():
        assert prop["type"] == "string" and prop["description"]


@pytest.mark.parametrize(("enum", "values"), [
    ("StorageSku", ["Standard_LRS", "Standard_ZRS", "Standard_GRS", "Standard_RAGRS", "Standard_GZRS",
                    "Standard_RAGZRS"]),
    ("RegistrySku", ["Basic", "Standard", "Premium"]),
    ("NetworkPolicy", ["cilium", "azure", "calico"]),
    ("KubeloginMode", ["azurecli", "workloadidentity", "spn", "msi"]),
    ("PrincipalType", ["User", "ServicePrincipal", "Group"]),
])
def test_choices_are_schema_enums(schema: dict[str, Any], enum: str, values: list[str]) -> None:
    spec = schema["types"][token(enum)]
    assert spec["type"] == "string"
    assert [v["value"] for v in spec["enum"]] == values


def test_nested_args_are_an_object_type(schema: dict[str, Any]) -> None:
    zone = schema["types"][token("DnsZoneArgs")]
    assert zone["type"] == "object"
    assert sorted(zone["properties"]) == ["recordName", "resourceGroupName", "ttl", "zoneName"]
    assert sorted(zone["required"]) == ["recordName", "resourceGroupName", "zoneName"]


def test_canary_args_are_an_object_type_without_the_python_only_definition(schema: dict[str, Any]) -> None:
    canary = schema["types"][token("CanaryArgs")]
    assert sorted(canary["properties"]) == ["analysisClientId", "prometheusUrl", "serviceAccount"]
    assert sorted(canary["required"]) == ["analysisClientId", "prometheusUrl"]


def test_depends_on_is_a_resource_option_not_an_input(schema: dict[str, Any]) -> None:
    assert "dependsOn" not in schema["resources"][token("ModelService")]["inputProperties"]


# -- construction the way the provider does it (inputs as the engine sends them) -------------------

SERVICE_INPUTS = {"image": PINNED, "modelName": "digits", "modelVersion": "1.0.0", "dnsLabel": "digits-dev",
                  "location": "westeurope",
                  "canary": {"prometheusUrl": "https://amw-1.westeurope.prometheus.monitor.azure.com",
                             "analysisClientId": "analysis-client-id"}}


@pytest.mark.parametrize(("component", "inputs", "message"), [
    ("ModelService", {**SERVICE_INPUTS, "replicas": 1}, "replicas must be >= 2"),
    ("ModelService", {**SERVICE_INPUTS, "dnsLabel": "9digits"}, "not an Azure DNS name label"),
    ("ContainerRegistry", {"resourceGroupName": "rg", "registryName": "modelshipacr01", "location": "l"},
     "deployer_principal_type must be one of User, ServicePrincipal, Group when grant_push_to_deployer"),
    ("KubernetesCluster", {"resourceGroupName": "rg", "clusterName": "c", "location": "l", "minCount": 4,
                           "maxCount": 2, "deployerPrincipalType": "User"}, "min_count <= max_count"),
])
def test_construct_keeps_the_args_validation(mocks: RecordingMocks, component: str, inputs: dict[str, Any],
                                             message: str) -> None:
    with pytest.raises(ComponentInitError, match=message):
        provider().construct("x", token(component), inputs, pulumi.ResourceOptions())
    assert not [r for r in mocks.resources if r.custom]


def test_an_enum_value_outside_the_schema_is_refused_by_the_provider() -> None:
    with pytest.raises(Exception, match="Invalid value Gold"):
        provider().construct("reg", token("ContainerRegistry"),
                             {"resourceGroupName": "rg", "registryName": "modelshipacr01", "location": "l",
                              "sku": "Gold", "grantPushToDeployer": False}, pulumi.ResourceOptions())


@pytest.mark.parametrize("with_zone", [False, True])
def test_construct_builds_the_python_component_under_the_package_token(mocks: RecordingMocks,
                                                                        with_zone: bool) -> None:
    inputs = dict(SERVICE_INPUTS)
    if with_zone:
        inputs["dnsZone"] = {"zoneName": "models.example.com", "resourceGroupName": "dns-rg",
                             "recordName": "digits"}
    seen: dict[str, Any] = {}

    @pulumi.runtime.test
    def construct() -> pulumi.Output:
        dependency = k8s.core.v1.Namespace("acr-pull", metadata={"name": "acr-pull"})
        result = provider().construct("svc", token("ModelService"), inputs,
                                      pulumi.ResourceOptions(depends_on=[dependency]))
        return pulumi.Output.all(result.urn, result.state["url"]).apply(
            lambda v: seen.update(urn=v[0], url=v[1]))

    construct()  # returns once every registration has been answered
    assert seen["urn"].endswith("$modelship:index:ModelService::svc")
    assert seen["url"] == ("http://digits.models.example.com" if with_zone
                           else "http://digits-dev.westeurope.cloudapp.azure.com")
    rollout = next(r for r in mocks.resources if r.type == ROLLOUT)
    assert rollout.inputs["spec"]["template"]["spec"]["containers"][0]["image"] == PINNED
    # The dependsOn resource option reaches the workload, as ModelServiceArgs.depends_on does.
    assert any(d.endswith("::acr-pull") for d in rollout.dependencies)
    records = [r for r in mocks.resources if r.type == "azure-native:dns:RecordSet"]
    assert len(records) == (1 if with_zone else 0)


# -- the plugin itself ---------------------------------------------------------------------------

def test_plugin_manifest_declares_a_python_plugin() -> None:
    manifest = yaml.safe_load((ROOT / "provider" / "PulumiPlugin.yaml").read_text())
    assert manifest == {"runtime": "python"}
    assert "-r ../requirements.txt" in (ROOT / "provider" / "requirements.txt").read_text().splitlines()


def test_entry_point_hosts_the_components(monkeypatch: pytest.MonkeyPatch) -> None:
    hosted: dict[str, Any] = {}
    monkeypatch.setattr(experimental, "component_provider_host",
                        lambda components, name, version: hosted.update(c=components, n=name, v=version))
    runpy.run_path(str(ROOT / "provider" / "__main__.py"), run_name="__main__")
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert hosted == {"c": COMPONENTS, "n": "modelship", "v": version}
