"""What Azure (ARM, AKS, BuildKit) refuses that a type check cannot see, as offline rules.

The recording mocks (:mod:`components.testing`) run :func:`check_resource` on every registration,
so a program that Azure would reject fails the offline suite too. Each rule names its source;
each has a test in ``tests/components/test_arm_rules.py`` that makes it fire.

``check_resource(token, name, inputs, principal_kinds)`` returns one message per broken rule.
``principal_kinds`` maps principal object ids to what they are (``User``, ``ServicePrincipal``),
the facts ARM knows about the tenant and the mocks stand in for.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
MANAGED_CLUSTER = "azure-native:containerservice:ManagedCluster"
STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
REGISTRY = "azure-native:containerregistry:Registry"
IMAGE = "docker-build:index:Image"
SERVICE = "kubernetes:core/v1:Service"
DNS_LABEL_ANNOTATION = "service.beta.kubernetes.io/azure-dns-label-name"

# https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules
_STORAGE_ACCOUNT_RE = re.compile(r"^[a-z0-9]{3,24}$")  # Microsoft.Storage/storageAccounts
_REGISTRY_RE = re.compile(r"^[A-Za-z0-9]{5,50}$")  # Microsoft.ContainerRegistry/registries
_CLUSTER_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$")  # managedClusters: 1-63
# AKS dnsPrefix: 1-54 letters, digits and '-', starting and ending alphanumeric
# (https://learn.microsoft.com/azure/aks/create-cluster ... `az aks create --dns-name-prefix`).
_DNS_PREFIX_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,52}[A-Za-z0-9])?$")
# Public IP domainNameLabel, which the AKS cloud provider sets from the annotation:
# ^[a-z][a-z0-9-]{1,61}[a-z0-9]$ (https://learn.microsoft.com/azure/virtual-network/ip-services/
# public-ip-addresses#dns-name-label and the ARM error InvalidDomainNameLabel).
_AZURE_DNS_LABEL_RE = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")
# Kubernetes object names that are DNS labels (namespaces, services): RFC 1123, at most 63.
# https://kubernetes.io/docs/concepts/overview/working-with-objects/names/#dns-label-names
_RFC1123_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_LABEL_NAMED_KINDS = ("kubernetes:core/v1:Namespace", "kubernetes:core/v1:Service")

Rule = Callable[[str, Mapping[str, Any], Mapping[str, str]], list[str]]


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _principal_type(name: str, inputs: Mapping[str, Any], kinds: Mapping[str, str]) -> list[str]:
    """ARM checks ``principalType`` against the directory object: a service principal sent as
    ``User`` (pulumi-azure-native's default when none is given) fails with UnmatchedPrincipalType.
    https://learn.microsoft.com/azure/role-based-access-control/troubleshooting#symptom---assigning-a-role-to-a-new-principal-sometimes-fails
    https://learn.microsoft.com/azure/role-based-access-control/role-assignments-template#principaltype
    """
    principal, declared = inputs.get("principalId"), inputs.get("principalType")
    actual = kinds.get(principal) if isinstance(principal, str) else None
    if actual is None:
        return [] if declared else [f"role assignment {name}: principalType must be set for {principal!r}"]
    if declared != actual:
        return [f"role assignment {name}: principalType {declared!r} does not match principal {principal} "
                f"which is a {actual} (ARM: UnmatchedPrincipalType)"]
    return []


def _aks_entra(name: str, inputs: Mapping[str, Any], kinds: Mapping[str, str]) -> list[str]:
    """Azure RBAC for Kubernetes authorization needs managed Entra ID integration
    (https://learn.microsoft.com/azure/aks/manage-azure-rbac); disabling local accounts is only
    possible with Entra ID integration (https://learn.microsoft.com/azure/aks/manage-local-accounts-managed-azure-ad).
    """
    errors = []
    managed = _get(inputs, "aadProfile", "managed") is True
    if _get(inputs, "aadProfile", "enableAzureRBAC") is True and not managed:
        errors.append(f"AKS cluster {name}: aadProfile.enableAzureRBAC needs aadProfile.managed=true")
    if inputs.get("disableLocalAccounts") is True and not managed:
        errors.append(f"AKS cluster {name}: disableLocalAccounts needs Entra ID integration "
                      "(aadProfile.managed=true)")
    if inputs.get("disableLocalAccounts") is True and inputs.get("enableRBAC") is False:
        errors.append(f"AKS cluster {name}: disableLocalAccounts needs enableRBAC=true")
    return errors


def _aks_network(name: str, inputs: Mapping[str, Any], kinds: Mapping[str, str]) -> list[str]:
    """Network policy engine against plugin and dataplane.

    * ``cilium`` policy requires ``networkDataplane: cilium`` and a cilium dataplane enforces
      cilium policy only (NetworkPolicy enum: "This requires networkDataplane to be 'cilium'";
      https://learn.microsoft.com/azure/aks/azure-cni-powered-by-cilium).
    * the cilium dataplane and Azure Network Policy Manager need ``networkPlugin: azure``
      (https://learn.microsoft.com/azure/aks/use-network-policies#network-policy-options-in-aks).
    """
    profile = inputs.get("networkProfile") or {}
    plugin = profile.get("networkPlugin")
    policy = profile.get("networkPolicy")
    dataplane = profile.get("networkDataplane")
    errors = []
    if policy == "cilium" and dataplane != "cilium":
        errors.append(f"AKS cluster {name}: networkPolicy 'cilium' requires networkDataplane 'cilium', "
                      f"got {dataplane!r}")
    if dataplane == "cilium" and policy not in (None, "cilium"):
        errors.append(f"AKS cluster {name}: networkDataplane 'cilium' enforces only networkPolicy 'cilium', "
                      f"got {policy!r}")
    if (dataplane == "cilium" or policy == "azure") and plugin != "azure":
        errors.append(f"AKS cluster {name}: networkPolicy {policy!r}/networkDataplane {dataplane!r} require "
                      f"networkPlugin 'azure', got {plugin!r}")
    return errors


def _names(token: str) -> Rule:
    def rule(name: str, inputs: Mapping[str, Any], kinds: Mapping[str, str]) -> list[str]:
        checks: list[tuple[str, Any, re.Pattern[str], str]] = []
        if token == STORAGE_ACCOUNT:
            checks.append(("accountName", inputs.get("accountName"), _STORAGE_ACCOUNT_RE,
                           "3-24 lowercase letters and digits"))
        elif token == REGISTRY:
            checks.append(("registryName", inputs.get("registryName"), _REGISTRY_RE,
                           "5-50 letters and digits"))
        elif token == MANAGED_CLUSTER:
            checks.append(("resourceName", inputs.get("resourceName"), _CLUSTER_RE,
                           "1-63 letters, digits, '-' and '_', alphanumeric at both ends"))
            checks.append(("dnsPrefix", inputs.get("dnsPrefix"), _DNS_PREFIX_RE,
                           "1-54 letters, digits and '-', alphanumeric at both ends"))
        elif token == SERVICE:
            label = _get(inputs, "metadata", "annotations", DNS_LABEL_ANNOTATION)
            if label is not None:
                checks.append((f"metadata.annotations[{DNS_LABEL_ANNOTATION}]", label, _AZURE_DNS_LABEL_RE,
                               "3-63 lowercase letters, digits and '-', a letter first, alphanumeric last"))
        if token in _LABEL_NAMED_KINDS and _get(inputs, "metadata", "name") is not None:
            checks.append(("metadata.name", _get(inputs, "metadata", "name"), _RFC1123_LABEL_RE,
                           "an RFC 1123 label of at most 63 characters"))
        return [f"{token} {name}: {key} {value!r} is not allowed; use {rule_text}"
                for key, value, pattern, rule_text in checks
                if value is not None and not (isinstance(value, str) and pattern.match(value))]

    return rule


def _build_cache(name: str, inputs: Mapping[str, Any], kinds: Mapping[str, str]) -> list[str]:
    """BuildKit's default ``docker`` driver exports only the inline cache (registry, local, gha,
    azblob need a docker-container, kubernetes or remote builder, or the containerd image store):
    "Cache export is not supported for the docker driver"
    (https://docs.docker.com/build/cache/backends/). pulumi-docker-build uses the default builder
    unless ``builder.name`` names one (BuilderConfigArgs: the docker driver is not supported there).
    """
    exports = [entry for entry in inputs.get("cacheTo") or [] if isinstance(entry, Mapping)]
    needs_builder = [k for entry in exports for k in entry if k not in ("inline", "disabled")]
    if needs_builder and not _get(inputs, "builder", "name"):
        kinds = ", ".join(sorted(set(needs_builder)))
        return [f"image {name}: cacheTo {kinds} needs a buildx builder with a "
                "docker-container driver (builder.name); the default docker driver refuses cache export"]
    return []


RULES: dict[str, tuple[Rule, ...]] = {
    ROLE_ASSIGNMENT: (_principal_type,),
    MANAGED_CLUSTER: (_aks_entra, _aks_network, _names(MANAGED_CLUSTER)),
    STORAGE_ACCOUNT: (_names(STORAGE_ACCOUNT),),
    REGISTRY: (_names(REGISTRY),),
    IMAGE: (_build_cache,),
    SERVICE: (_names(SERVICE),),
    "kubernetes:core/v1:Namespace": (_names("kubernetes:core/v1:Namespace"),),
}
"""Rules per resource type token."""


def check_resource(token: str, name: str, inputs: Mapping[str, Any],
                   principal_kinds: Mapping[str, str]) -> list[str]:
    """Every Azure rule ``inputs`` break, one message each."""
    return [msg for rule in RULES.get(token, ()) for msg in rule(name, inputs, principal_kinds)]
