"""Each CrossGuard rule, called through its ``validate`` callable as the analyzer would call it.

A compliant resource of every governed type passes every rule; one broken property at a time
makes exactly the rule that owns it fire, with a message naming the property.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest
from pulumi_policy import EnforcementLevel
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

from policy import rules
from policy.rules import POLICIES, check_resource

DIGEST = "sha256:" + "ab" * 32
POLICY_DIR = Path(__file__).resolve().parents[2] / "policy"


def _container(name: str = "server") -> dict:
    return {
        "name": name,
        "image": f"modelship.azurecr.io/modelship@{DIGEST}",
        "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False},
        "resources": {"limits": {"cpu": "1", "memory": "512Mi"}, "requests": {"cpu": "250m"}},
    }


GOOD: dict[str, dict] = {
    rules.STORAGE_ACCOUNT: {"allowBlobPublicAccess": False, "minimumTlsVersion": "TLS1_2",
                            "allowSharedKeyAccess": False, "enableHttpsTrafficOnly": True,
                            "kind": "StorageV2", "sku": {"name": "Standard_LRS"}},
    rules.BLOB_CONTAINER: {"publicAccess": "None", "containerName": "models"},
    rules.REGISTRY: {"adminUserEnabled": False, "sku": {"name": "Basic"}},
    rules.MANAGED_CLUSTER: {"enableRBAC": True, "identity": {"type": "SystemAssigned"},
                            "dnsPrefix": "modelship"},
    "kubernetes:apps/v1:Deployment": {
        "metadata": {"name": "digits"},
        "spec": {"replicas": 2, "template": {"spec": {
            "securityContext": {"runAsUser": 10001},
            "containers": [_container()]}}},
    },
    rules.SERVICE: {"metadata": {"annotations": {rules.DNS_LABEL_ANNOTATION: "modelship-dev"}},
                    "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}},
    rules.ROLLOUT: {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": "digits"},
        "spec": {"template": {"spec": {"securityContext": {"runAsUser": 10001},
                                       "containers": [_container()]}},
                 "strategy": {"canary": {"steps": [{"setWeight": 10}]}}},
    },
    rules.ANALYSIS_TEMPLATE: {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "canary"},
        "spec": {"metrics": [
            {"name": "web", "provider": {"web": {"url": "http://example"}}},
            {"name": "canary-analysis", "provider": {"job": {"spec": {"template": {"spec": {
                "containers": [_container("analysis")]}}}}}},
        ]},
    },
}


def _set(props: dict, path: str, value) -> dict:
    """Copy of ``props`` with the dotted ``path`` set to ``value`` (``DELETE`` removes it)."""
    out = copy.deepcopy(props)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return out


DELETE = object()
POD = "spec.template.spec"
C0 = f"{POD}.containers.0"
JOB0 = "spec.metrics.1.provider.job.spec.template.spec.containers.0"

# (resource type, property path, bad value, the rule that must fire, words its message must hold)
BREAKS = [
    (rules.STORAGE_ACCOUNT, "allowBlobPublicAccess", True, "storage-no-public-blob-access",
     "allowBlobPublicAccess must be false"),
    (rules.STORAGE_ACCOUNT, "allowBlobPublicAccess", DELETE, "storage-no-public-blob-access", "got None"),
    (rules.BLOB_CONTAINER, "publicAccess", "Blob", "storage-no-public-blob-access", "publicAccess"),
    (rules.STORAGE_ACCOUNT, "minimumTlsVersion", "TLS1_0", "storage-tls-1-2", "must be one of TLS1_2"),
    (rules.STORAGE_ACCOUNT, "minimumTlsVersion", "TLS1_3", "storage-tls-1-2", "must be one of TLS1_2"),
    (rules.STORAGE_ACCOUNT, "minimumTlsVersion", DELETE, "storage-tls-1-2", "minimumTlsVersion"),
    (rules.STORAGE_ACCOUNT, "enableHttpsTrafficOnly", False, "storage-tls-1-2", "enableHttpsTrafficOnly"),
    (rules.STORAGE_ACCOUNT, "allowSharedKeyAccess", True, "storage-shared-key-disabled",
     "allowSharedKeyAccess must be false"),
    (rules.STORAGE_ACCOUNT, "allowSharedKeyAccess", DELETE, "storage-shared-key-disabled", "got None"),
    (rules.REGISTRY, "adminUserEnabled", True, "acr-admin-disabled", "adminUserEnabled"),
    (rules.MANAGED_CLUSTER, "enableRBAC", False, "aks-rbac-managed-identity", "enableRBAC must be true"),
    (rules.MANAGED_CLUSTER, "enableRBAC", DELETE, "aks-rbac-managed-identity", "enableRBAC"),
    (rules.MANAGED_CLUSTER, "identity", DELETE, "aks-rbac-managed-identity", "identity.type"),
    (rules.MANAGED_CLUSTER, "identity.type", "None", "aks-rbac-managed-identity", "managed identity"),
    (rules.MANAGED_CLUSTER, "servicePrincipalProfile", {"clientId": "x", "secret": "s"},
     "aks-rbac-managed-identity", "servicePrincipalProfile.secret"),
    ("kubernetes:apps/v1:Deployment", f"{C0}.securityContext.runAsNonRoot", False,
     "containers-non-root-read-only-limits", "runAsNonRoot must be true"),
    ("kubernetes:apps/v1:Deployment", f"{C0}.securityContext.runAsNonRoot", DELETE,
     "containers-non-root-read-only-limits", "runAsNonRoot"),
    ("kubernetes:apps/v1:Deployment", f"{POD}.securityContext.runAsUser", 0,
     "containers-non-root-read-only-limits", "runAsUser must not be 0"),
    ("kubernetes:apps/v1:Deployment", f"{C0}.securityContext.readOnlyRootFilesystem", False,
     "containers-non-root-read-only-limits", "readOnlyRootFilesystem must be true"),
    ("kubernetes:apps/v1:Deployment", f"{C0}.resources.limits.memory", DELETE,
     "containers-non-root-read-only-limits", "limits must set memory"),
    ("kubernetes:apps/v1:Deployment", f"{C0}.resources", DELETE,
     "containers-non-root-read-only-limits", "limits must set cpu and memory"),
    ("kubernetes:apps/v1:Deployment", f"{C0}.image", "modelship.azurecr.io/modelship:latest",
     "images-pinned-by-digest", "pinned by digest"),
    ("kubernetes:apps/v1:Deployment", f"{C0}.image", "modelship.azurecr.io/modelship@sha256:abc",
     "images-pinned-by-digest", "sha256"),
    (rules.SERVICE, "metadata.annotations", {}, "loadbalancer-dns-label", rules.DNS_LABEL_ANNOTATION),
    (rules.SERVICE, "metadata.annotations", {rules.DNS_LABEL_ANNOTATION: ""}, "loadbalancer-dns-label",
     "must name a DNS label"),
    (rules.SERVICE, "metadata.annotations", {rules.DNS_LABEL_ANNOTATION: "9models"}, "loadbalancer-dns-label",
     "is not a DNS label Azure accepts"),
    (rules.SERVICE, "metadata.annotations", {rules.DNS_LABEL_ANNOTATION: "Models_Dev"},
     "loadbalancer-dns-label", "is not a DNS label Azure accepts"),
    ("kubernetes:apps/v1:Deployment", f"{C0}.securityContext.privileged", True, "containers-no-privilege",
     "privileged must not be true"),
    ("kubernetes:apps/v1:Deployment", f"{C0}.securityContext.allowPrivilegeEscalation", True,
     "containers-no-privilege", "allowPrivilegeEscalation must be false"),
    ("kubernetes:apps/v1:Deployment", f"{C0}.securityContext.allowPrivilegeEscalation", DELETE,
     "containers-no-privilege", "allowPrivilegeEscalation must be false, got None"),
    ("kubernetes:apps/v1:Deployment", f"{C0}.securityContext.capabilities", {"add": ["NET_ADMIN"]},
     "containers-no-privilege", "may only hold NET_BIND_SERVICE, got NET_ADMIN"),
    ("kubernetes:apps/v1:Deployment", f"{POD}.hostNetwork", True, "pods-isolated-from-the-node",
     "hostNetwork must not be true"),
    ("kubernetes:apps/v1:Deployment", f"{POD}.hostPID", True, "pods-isolated-from-the-node", "hostPID"),
    ("kubernetes:apps/v1:Deployment", f"{POD}.hostIPC", True, "pods-isolated-from-the-node", "hostIPC"),
    ("kubernetes:apps/v1:Deployment", f"{POD}.ephemeralContainers", [{"name": "debug", "image": "busybox"}],
     "pods-isolated-from-the-node", "ephemeralContainers must not be declared"),
    # The Rollout that replaces the Deployment, and the analysis Job's pod, are held to the same rules.
    (rules.ROLLOUT, f"{C0}.securityContext.runAsNonRoot", False, "containers-non-root-read-only-limits",
     "Rollout bad containers[0] (server): securityContext.runAsNonRoot must be true"),
    (rules.ROLLOUT, f"{C0}.securityContext.readOnlyRootFilesystem", DELETE,
     "containers-non-root-read-only-limits", "readOnlyRootFilesystem must be true"),
    (rules.ROLLOUT, f"{C0}.resources.limits", DELETE, "containers-non-root-read-only-limits",
     "limits must set cpu and memory"),
    (rules.ROLLOUT, f"{C0}.image", "modelship.azurecr.io/modelship:2.1.0", "images-pinned-by-digest",
     "pinned by digest"),
    (rules.ROLLOUT, f"{C0}.securityContext.allowPrivilegeEscalation", True, "containers-no-privilege",
     "allowPrivilegeEscalation must be false"),
    (rules.ROLLOUT, f"{POD}.hostNetwork", True, "pods-isolated-from-the-node", "hostNetwork"),
    (rules.ANALYSIS_TEMPLATE, f"{JOB0}.securityContext.runAsNonRoot", DELETE,
     "containers-non-root-read-only-limits",
     "AnalysisTemplate bad metrics[1] (canary-analysis) job containers[0] (analysis): "
     "securityContext.runAsNonRoot"),
    (rules.ANALYSIS_TEMPLATE, f"{JOB0}.image", "python:3.12", "images-pinned-by-digest", "pinned by digest"),
    (rules.ANALYSIS_TEMPLATE, f"{JOB0}.resources.limits.cpu", DELETE, "containers-non-root-read-only-limits",
     "limits must set cpu"),
]


def test_pack_has_every_mandatory_rule_once():
    names = [p.name for p in POLICIES]
    assert len(names) == len(set(names))
    assert set(names) == {
        "storage-no-public-blob-access", "storage-tls-1-2", "storage-shared-key-disabled",
        "acr-admin-disabled", "aks-rbac-managed-identity", "containers-non-root-read-only-limits",
        "images-pinned-by-digest", "loadbalancer-dns-label", "containers-no-privilege",
        "pods-isolated-from-the-node", "prod-only-dev-verified-digests",
    }
    assert all(p.enforcement_level is EnforcementLevel.MANDATORY for p in POLICIES)


@pytest.mark.parametrize("resource_type", sorted(GOOD))
def test_compliant_resource_passes_every_rule(resource_type):
    assert check_resource(resource_type, "good", GOOD[resource_type]) == []


@pytest.mark.parametrize(("resource_type", "path", "value", "policy", "words"), BREAKS,
                         ids=[f"{b[3]}:{b[1].split('.')[-1]}={'unset' if b[2] is DELETE else b[2]}"
                              for b in BREAKS])
def test_one_broken_property_fires_its_rule(resource_type, path, value, policy, words):
    violations = check_resource(resource_type, "bad", _set(GOOD[resource_type], path, value))
    assert {v.policy for v in violations} == {policy}, violations
    assert any(words in v.message and "bad" in v.message for v in violations), violations


def test_acr_admin_unset_is_the_api_default_false():
    assert check_resource(rules.REGISTRY, "acr", _set(GOOD[rules.REGISTRY], "adminUserEnabled", DELETE)) == []


def test_pod_level_non_root_covers_the_containers():
    props = _set(GOOD["kubernetes:apps/v1:Deployment"], f"{C0}.securityContext.runAsNonRoot", DELETE)
    props = _set(props, f"{POD}.securityContext.runAsNonRoot", True)
    assert check_resource("kubernetes:apps/v1:Deployment", "d", props) == []


def test_init_containers_and_other_workload_kinds_are_checked():
    bad = _container("init")
    bad["image"] = "busybox:1.36"
    props = _set(GOOD["kubernetes:apps/v1:Deployment"], f"{POD}.initContainers", [bad])
    violations = check_resource("kubernetes:apps/v1:Deployment", "d", props)
    assert [v.policy for v in violations] == ["images-pinned-by-digest"]
    assert "initContainers[0] (init)" in violations[0].message

    cron = {"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [
        {"name": "job", "image": "busybox:1.36"}]}}}}}}
    fired = {v.policy for v in check_resource("kubernetes:batch/v1:CronJob", "cron", cron)}
    assert fired == {"containers-non-root-read-only-limits", "images-pinned-by-digest",
                     "containers-no-privilege"}


def test_net_bind_service_is_the_one_capability_allowed():
    props = _set(GOOD["kubernetes:apps/v1:Deployment"], f"{C0}.securityContext.capabilities",
                 {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]})
    assert check_resource("kubernetes:apps/v1:Deployment", "d", props) == []


def test_allowed_tls_is_what_the_sdk_documents_as_supported():
    """The SDK's enum lists TLS1_3 and says Azure Storage does not support it: the rule follows
    the documentation, not the list."""
    import re

    from pulumi_azure_native.storage import MinimumTlsVersion

    doc = MinimumTlsVersion.__doc__ or ""
    pattern = r"TLS version (\d)\.(\d) version is not supported"
    unsupported = {f"TLS{a}_{b}" for a, b in re.findall(pattern, doc)}
    assert unsupported == {"TLS1_3"}, doc  # if the SDK's wording changes, look again
    supported_modern = {m.value for m in MinimumTlsVersion} - unsupported - {"TLS1_0", "TLS1_1"}
    assert set(rules.ALLOWED_TLS) == supported_modern


def test_clusterip_service_needs_no_dns_label():
    props = {"metadata": {}, "spec": {"type": "ClusterIP"}}
    assert check_resource(rules.SERVICE, "internal", props) == []


def test_unknown_value_during_preview_is_deferred_not_passed():
    """An image digest not known at preview raises the SDK's UnknownValueError (the analyzer defers)."""
    props = _set(GOOD["kubernetes:apps/v1:Deployment"], f"{C0}.image", UNKNOWN_STRING_VALUE)
    with pytest.raises(UnknownValueError):
        check_resource("kubernetes:apps/v1:Deployment", "d", props)


def test_unrelated_resources_are_ignored():
    assert check_resource("azure-native:resources:ResourceGroup", "rg", {"location": "westeurope"}) == []


def test_pack_entry_point_wraps_all_rules_as_mandatory():
    """__main__.py blocks serving gRPC when run, so check what it builds from its source."""
    tree = ast.parse((POLICY_DIR / "__main__.py").read_text())
    calls = [n for n in ast.walk(tree)
             if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "PolicyPack"]
    assert len(calls) == 1
    kwargs = {k.arg: ast.unparse(k.value) for k in calls[0].keywords}
    assert kwargs == {"name": "'modelship'", "enforcement_level": "EnforcementLevel.MANDATORY",
                      "policies": "POLICIES"}
    yaml_text = (POLICY_DIR / "PulumiPolicy.yaml").read_text()
    assert "name: python" in yaml_text and "virtualenv: venv" in yaml_text
    requirements = (POLICY_DIR / "requirements.txt").read_text()
    assert "pulumi-policy==" in requirements


def test_the_policy_packs_own_copies_of_shared_rules_agree_with_their_home() -> None:
    """policy/rules.py imports nothing of the project (it runs in the policy pack's own virtualenv),
    so it keeps copies of three facts; they must say what their one home says."""
    from components import naming
    from modelship_contract.image import DIGEST_REF_RE

    assert rules.AZURE_DNS_LABEL_RE.pattern == naming.AZURE_DNS_LABEL_RE.pattern
    assert rules.DNS_LABEL_ANNOTATION == naming.DNS_LABEL_ANNOTATION
    digest = "sha256:" + "a" * 64
    for ref in (f"acr.azurecr.io/modelship/digits@{digest}", f"acr.azurecr.io/m/d:t@{digest}",
                f"127.0.0.1:5000/m/d@{digest}", "acr.azurecr.io/m/d:latest",
                f"acr.azurecr.io/m/d@{digest[:-1]}", f"acr.azurecr.io/m/d@{digest}X",
                f"acr.azurecr.io/m/d@sha256:{'A' * 64}"):
        assert bool(rules.DIGEST_RE.search(ref)) == bool(DIGEST_REF_RE.match(ref)), ref
