"""The whole program under recording mocks: security properties, wiring, secrets, model handling."""

from __future__ import annotations

import base64
from pathlib import Path

import pulumi
import pytest
import yaml

from components import testing
from components.rollout import ANALYSIS_TEMPLATE_TYPE as ANALYSIS_TEMPLATE
from components.rollout import ROLLOUT_TYPE as ROLLOUT
from components.stack import ModelMismatchError, build_stack, resolve_revision
from components.testing import (
    CLIENT_OBJECT_ID,
    INVOKES,
    KUBELET_OBJECT_ID,
    SUBSCRIPTION_ID,
    RecordedResource,
    StackRun,
    by_type,
    one,
    run_stack,
)
from tests.components.conftest import make_project, make_settings, write_model

ACR_PULL = "7f951dca-d4ca-4dab-b8c3-cc6d4bdbe6a4"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> StackRun:
    root = make_project(tmp_path_factory.mktemp("stack") / "project")
    return run_stack(make_settings(dnsZoneName="models.example.com", dnsZoneResourceGroup="dns-rg"),
                     project_root=root)


def _by_name(run: StackRun, name: str) -> RecordedResource:
    return next(r for r in run if r.name == name)




def _container(run: StackRun) -> dict:
    return one(run, ROLLOUT).inputs["spec"]["template"]["spec"]["containers"][0]


def test_every_invoke_is_mocked_and_unknown_ones_fail(run: StackRun) -> None:
    assert {i.token for i in run.invokes} == INVOKES
    with pytest.raises(testing.UnmockedInvokeError, match="not mocked"):
        testing.RecordingMocks().call(pulumi.runtime.MockCallArgs("azure-native:x:getY", {}, ""))


def test_model_store_is_identity_only(run: StackRun) -> None:
    account = one(run, "azure-native:storage:StorageAccount").inputs
    assert account["enableHttpsTrafficOnly"] is True
    assert account["minimumTlsVersion"] == "TLS1_2"
    assert account["allowBlobPublicAccess"] is False
    assert account["allowSharedKeyAccess"] is False
    blobs = one(run, "azure-native:storage:BlobServiceProperties").inputs
    assert blobs["isVersioningEnabled"] is True
    assert blobs["deleteRetentionPolicy"] == {"enabled": True, "days": 7}
    assert blobs["containerDeleteRetentionPolicy"]["enabled"] is True
    assert one(run, "azure-native:storage:BlobContainer").inputs["publicAccess"] == "None"
    assert run.outputs["blobEndpoint"] == "https://modelshipdev01.blob.core.windows.net/"
    assert run.outputs["modelContainer"] == "models"


def test_registry_has_no_admin_user_nor_anonymous_pull(run: StackRun) -> None:
    acr = one(run, "azure-native:containerregistry:Registry").inputs
    assert acr["adminUserEnabled"] is False and acr["anonymousPullEnabled"] is False
    assert run.outputs["registryLoginServer"] == "modelshipacr01.azurecr.io"
    # No credentials are handed to the image build: the host's `az acr login` is used.
    image = one(run, "docker-build:index:Image").inputs
    assert "registries" not in image
    push = _by_name(run, "modelship-registry-push").inputs
    assert push["principalId"] == CLIENT_OBJECT_ID
    assert push["roleDefinitionId"].endswith("/8311e382-0749-4cb8-b61a-304f252e45ec")


def test_cluster_security_and_autoscaling(run: StackRun) -> None:
    aks = one(run, "azure-native:containerservice:ManagedCluster").inputs
    assert aks["identity"] == {"type": "SystemAssigned"}
    assert aks["enableRBAC"] is True and aks["disableLocalAccounts"] is True
    assert aks["aadProfile"]["managed"] is True and aks["aadProfile"]["enableAzureRBAC"] is True
    assert aks["oidcIssuerProfile"] == {"enabled": True}
    assert aks["securityProfile"]["workloadIdentity"] == {"enabled": True}
    assert aks["networkProfile"]["networkPolicy"] == "cilium"
    assert aks["networkProfile"]["networkDataplane"] == "cilium"  # Cilium policy requires it
    (pool,) = aks["agentPoolProfiles"]
    assert pool["mode"] == "System" and pool["enableAutoScaling"] is True
    assert (pool["minCount"], pool["maxCount"]) == (1, 3)


def test_acr_pull_goes_to_the_kubelet_identity_on_the_registry(run: StackRun) -> None:
    pull = _by_name(run, "modelship-cluster-acr-pull").inputs
    registry = one(run, "azure-native:containerregistry:Registry")
    assert pull["principalId"] == KUBELET_OBJECT_ID
    assert pull["scope"] == registry.id
    # Role id built from the subscription getClientConfig returned, not hard-coded.
    assert pull["roleDefinitionId"] == (
        f"/subscriptions/{SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions/{ACR_PULL}"
    )


def test_kubeconfig_is_secret_and_non_interactive(run: StackRun) -> None:
    assert "kubeconfig" in run.secret_outputs
    config = yaml.safe_load(run.outputs["kubeconfig"])
    exec_ = config["users"][0]["user"]["exec"]
    assert exec_["command"] == "kubelogin"
    assert exec_["args"][:3] == ["get-token", "--login", "azurecli"]
    assert "devicecode" not in run.outputs["kubeconfig"]
    assert exec_["interactiveMode"] == "Never"
    # The provider is built from that kubeconfig, and only it carries it.
    provider = one(run, "pulumi:providers:kubernetes")
    assert provider.inputs["kubeconfig"] == run.outputs["kubeconfig"]
    assert provider.secret_inputs == {"kubeconfig"}
    assert run.secret_outputs == {"kubeconfig"}
    # No component carries the kubeconfig (component props land in state in clear).
    assert all("kubeconfig" not in r.inputs for r in run if not r.custom)


def test_kubernetes_objects_use_the_cluster_provider(run: StackRun) -> None:
    provider = one(run, "pulumi:providers:kubernetes")
    k8s_objects = [r for r in run if r.custom and r.type.startswith("kubernetes:")]
    # The service's 8 (namespace, analysis account and template, Rollout, PDB, HPA, policy, Service), the
    # Argo Rollouts namespace and release, the scrape job.
    assert len(k8s_objects) == 11
    for obj in k8s_objects:
        assert obj.provider.startswith(provider.urn + "::"), obj.name


def test_image_is_tagged_with_revision_and_model_and_deployed_by_digest(run: StackRun) -> None:
    image = one(run, "docker-build:index:Image")
    tag = "modelshipacr01.azurecr.io/modelship/digits:0123456789ab-digits-2.1.0"
    assert image.inputs["tags"] == [tag]
    assert image.inputs["push"] is True
    assert image.inputs["context"] == {"location": "app"}
    assert image.inputs["dockerfile"] == {"location": "app/Dockerfile"}
    assert image.inputs["buildArgs"]["MODEL_VERSION"] == "2.1.0"
    assert image.inputs["buildArgs"]["REVISION"] == "0123456789ab"
    cache = "modelshipacr01.azurecr.io/modelship/digits:buildcache"
    assert image.inputs["cacheFrom"] == [{"registry": {"ref": cache}}]
    assert image.inputs["cacheTo"][0]["registry"]["ref"] == cache
    assert image.inputs["cacheTo"][0]["registry"]["mode"] == "max"
    expected = f"{tag}@{image.outputs['digest']}"
    assert run.outputs["imageRef"] == expected
    assert _container(run)["image"] == expected


def test_the_rollout_waits_for_acr_pull_its_crds_and_the_analysis_identity(run: StackRun) -> None:
    rollout = one(run, ROLLOUT)
    for name in ("modelship-cluster-acr-pull", "modelship-rollouts-release", "modelship-service-analysis",
                 "modelship-metrics-analysis-reader", "modelship-metrics-analysis-fic"):
        assert _by_name(run, name).urn in rollout.dependencies, name
    assert _by_name(run, "modelship-rollouts-release").urn in one(run, ANALYSIS_TEMPLATE).dependencies


def test_pod_security_and_probes(run: StackRun) -> None:
    rollout = one(run, ROLLOUT).inputs
    spec = rollout["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["canary"]["maxUnavailable"] == 0 and spec["strategy"]["canary"]["maxSurge"] == 1
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert set(container["resources"]) == {"requests", "limits"}
    assert {"name": "MODELSHIP_MODEL_DIR", "value": "/opt/model"} in container["env"]
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    labels = spec["template"]["metadata"]["labels"]
    assert labels["modelship.io/model-name"] == "digits" and labels["modelship.io/model-version"] == "2.1.0"
    policy = one(run, "kubernetes:networking.k8s.io/v1:NetworkPolicy").inputs["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"] == [{"ports": [{"port": 8080, "protocol": "TCP"}]}]
    for ns in by_type(run, "kubernetes:core/v1:Namespace"):  # the model's and Argo Rollouts'
        assert ns.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_pdb_hpa_and_public_service(run: StackRun) -> None:
    pdb = one(run, "kubernetes:policy/v1:PodDisruptionBudget").inputs["spec"]
    assert pdb["minAvailable"] == 1
    hpa = one(run, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
    rollout = one(run, ROLLOUT)
    assert hpa.inputs["spec"]["scaleTargetRef"] == {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                                                    "name": rollout.inputs["metadata"]["name"]}
    assert rollout.urn in hpa.dependencies
    assert (hpa.inputs["spec"]["minReplicas"], hpa.inputs["spec"]["maxReplicas"]) == (2, 5)
    svc = one(run, "kubernetes:core/v1:Service").inputs
    assert svc["spec"]["type"] == "LoadBalancer"
    annotations = svc["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/azure-dns-label-name"] == "modelship-dev"
    record = one(run, "azure-native:dns:RecordSet").inputs
    assert record["zoneName"] == "models.example.com" and record["resourceGroupName"] == "dns-rg"
    assert record["aRecords"] == [{"ipv4Address": testing.LOAD_BALANCER_IP}]
    assert run.outputs["url"] == "http://modelship-dev.models.example.com"


def test_every_resource_sits_under_the_stack_component(run: StackRun) -> None:
    top = one(run, "modelship:stack:Modelship")
    for r in run:
        if r is not top:
            assert r.parent, r.name
    assert {r.type for r in run if r.parent == top.urn} >= {
        "modelship:store:ModelStore", "modelship:registry:ContainerRegistry",
        "modelship:cluster:KubernetesCluster", "modelship:image:ModelImage", "modelship:serving:ModelService",
    }


def test_no_zone_means_cloudapp_url_and_no_record(project: Path) -> None:
    run = run_stack(make_settings(location="northeurope"), project_root=project)
    assert not by_type(run, "azure-native:dns:RecordSet")
    assert run.outputs["url"] == "http://modelship-dev.northeurope.cloudapp.azure.com"


def test_fresh_stack_without_a_model_creates_the_platform_and_says_how(empty_project: Path) -> None:
    run = run_stack(make_settings(), project_root=empty_project)
    types = {r.type for r in run}
    assert {"azure-native:storage:StorageAccount", "azure-native:containerregistry:Registry",
            "azure-native:containerservice:ManagedCluster"} <= types
    assert not {"docker-build:index:Image", "kubernetes:apps/v1:Deployment"} & types
    (warning,) = run.warnings
    assert "modelship-models publish" in warning
    assert "modelship-models fetch digits@latest app/model" in warning
    assert run.outputs["modelStatus"] == warning


def test_model_dir_argument_stages_a_model_without_touching_the_project(
        empty_project: Path, tmp_path: Path) -> None:
    model = write_model(tmp_path / "elsewhere", version="3.0.0")
    run = run_stack(make_settings(), project_root=empty_project, model_dir=model)
    assert run.outputs["model"] == "digits@3.0.0"
    assert not (empty_project / "app" / "model").exists()


def test_pinned_version_must_match_the_fetched_model(project: Path) -> None:
    expected = (r"'modelVersion' is '9.9.9' but app/model/manifest.json holds version '2.1.0'"
                r".*modelship-models fetch digits@9.9.9")
    with pytest.raises(ModelMismatchError, match=expected):
        run_stack(make_settings(modelVersion="9.9.9"), project_root=project)
    with pytest.raises(ModelMismatchError, match="'modelName' is 'faces'"):
        run_stack(make_settings(modelName="faces"), project_root=project)
    pinned = run_stack(make_settings(modelVersion="2.1.0"), project_root=project)
    assert pinned.outputs["model"] == "digits@2.1.0"


def test_an_alias_deploys_the_version_the_fetch_resolved_it_to(project: Path) -> None:
    # `modelship-models fetch digits@production app/model` resolved the alias; the stack deploys that.
    run = run_stack(make_settings(modelVersion="production"), project_root=project)
    assert run.outputs["model"] == "digits@2.1.0"


def test_model_mismatch_registers_nothing(project: Path, mocks: testing.RecordingMocks) -> None:
    def program() -> None:
        with pytest.raises(ModelMismatchError):
            build_stack(make_settings(modelVersion="9.9.9"), project, revision="r1")

    # runtime.test waits for every registration the program started before returning.
    pulumi.runtime.test(program)()
    assert mocks.resources == [] and mocks.invokes == []


def test_preview_needs_no_storage_account_invokes(project: Path) -> None:
    run = run_stack(make_settings(), project_root=project, preview=True)
    assert {i.token for i in run.invokes} <= INVOKES
    assert not any("storage" in i.token for i in run.invokes)
    assert one(run, "azure-native:storage:StorageAccount")


def test_program_is_deterministic(project: Path) -> None:
    first = run_stack(make_settings(), project_root=project)
    second = run_stack(make_settings(), project_root=project)
    # Registration order may vary with concurrency; the declared set of resources may not.
    def declared(run: StackRun) -> list[tuple[str, str, str]]:
        return sorted((r.type, r.name, repr(r.inputs)) for r in run)

    assert declared(first) == declared(second)


def test_a_new_model_changes_only_the_image_inputs(project: Path) -> None:
    before = one(run_stack(make_settings(), project_root=project), "docker-build:index:Image")
    write_model(project / "app" / "model", version="2.2.0", payload=b"other")
    after = one(run_stack(make_settings(), project_root=project), "docker-build:index:Image")
    assert before.inputs["tags"] != after.inputs["tags"]
    assert after.inputs["buildArgs"]["MODEL_SHA256"] != before.inputs["buildArgs"]["MODEL_SHA256"]


def test_revision_comes_from_config_then_ci_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_revision("abc123", tmp_path) == "abc123"
    monkeypatch.setenv("GITHUB_SHA", "f" * 40)
    assert resolve_revision(None, tmp_path) == "f" * 12
    monkeypatch.delenv("GITHUB_SHA")
    monkeypatch.setenv("BUILD_SOURCEVERSION", "e" * 40)
    assert resolve_revision(None, tmp_path) == "e" * 12


def test_mock_kubeconfig_is_what_aks_returns_for_format_exec() -> None:
    raw = testing.RecordingMocks().call(pulumi.runtime.MockCallArgs(
        testing.LIST_USER_CREDENTIALS, {"format": "exec", "resourceName": "c"}, ""))
    text = base64.b64decode(raw["kubeconfigs"][0]["value"]).decode()
    assert "devicecode" in text


def test_the_hpa_scales_the_rollout_without_the_known_argo_rollouts_traps(run: StackRun) -> None:
    """HPA + Rollout (docs/azure.md, "HPA and the Rollout"): a replica-ratio canary with at most one
    surge pod, no traffic router, no dynamic stable scale, no canary scale step, no workloadRef, so
    the pods the HPA averages over are the Rollout's replicas (argo-rollouts#4369, #2857, #3849,
    #3825); the count is declared for the creation only; the scale subresource exists."""
    from components import crd_schemas

    rollout = one(run, ROLLOUT)
    spec = rollout.inputs["spec"]
    canary = spec["strategy"]["canary"]
    assert set(canary) == {"maxSurge", "maxUnavailable", "steps"} and canary["maxSurge"] == 1
    assert "workloadRef" not in spec
    assert all(set(step) <= {"setWeight", "pause", "analysis"} for step in canary["steps"])
    hpa = one(run, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler").inputs["spec"]
    assert hpa["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 60
    assert hpa["minReplicas"] == spec["replicas"]
    scale = crd_schemas.served_version("argoproj.io/v1alpha1", "Rollout")["subresources"]["scale"]
    assert scale == {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.HPAReplicas",
                     "labelSelectorPath": ".status.selector"}
