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

from components import naming

ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
MANAGED_CLUSTER = "azure-native:containerservice:ManagedCluster"
STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
REGISTRY = "azure-native:containerregistry:Registry"
IMAGE = "docker-build:index:Image"
SERVICE = "kubernetes:core/v1:Service"
DCR = "azure-native:monitor:DataCollectionRule"
DCR_ASSOCIATION = "azure-native:monitor:DataCollectionRuleAssociation"
FEDERATED_CREDENTIAL = "azure-native:managedidentity:FederatedIdentityCredential"

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
            checks.append(("accountName", inputs.get("accountName"), naming.STORAGE_ACCOUNT_RE,
                           "3-24 lowercase letters and digits"))
        elif token == REGISTRY:
            checks.append(("registryName", inputs.get("registryName"), naming.REGISTRY_RE,
                           "5-50 letters and digits"))
        elif token == MANAGED_CLUSTER:
            checks.append(("resourceName", inputs.get("resourceName"), naming.CLUSTER_RE,
                           "1-63 letters, digits, '-' and '_', alphanumeric at both ends"))
            checks.append(("dnsPrefix", inputs.get("dnsPrefix"), naming.DNS_PREFIX_RE,
                           "1-54 letters, digits and '-', alphanumeric at both ends"))
        elif token == SERVICE:
            label = _get(inputs, "metadata", "annotations", naming.DNS_LABEL_ANNOTATION)
            if label is not None:
                checks.append((f"metadata.annotations[{naming.DNS_LABEL_ANNOTATION}]", label,
                               naming.AZURE_DNS_LABEL_RE,
                               "3-63 lowercase letters, digits and '-', a letter first, alphanumeric last"))
        if token in _LABEL_NAMED_KINDS and _get(inputs, "metadata", "name") is not None:
            checks.append(("metadata.name", _get(inputs, "metadata", "name"), naming.RFC1123_LABEL_RE,
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


def _aks_monitor(name: str, inputs: Mapping[str, Any], kinds: Mapping[str, str]) -> list[str]:
    """The metrics add-on (managed Prometheus) needs a managed-identity cluster: "The cluster must
    use managed identity authentication" (prerequisites of
    https://learn.microsoft.com/azure/azure-monitor/containers/kubernetes-monitoring-enable).
    """
    if _get(inputs, "azureMonitorProfile", "metrics", "enabled") is True and \
            _get(inputs, "identity", "type") not in ("SystemAssigned", "UserAssigned"):
        return [f"AKS cluster {name}: azureMonitorProfile.metrics needs a managed identity "
                f"(identity.type SystemAssigned or UserAssigned), got {_get(inputs, 'identity', 'type')!r}"]
    return []


def _dcr_association(name: str, inputs: Mapping[str, Any], kinds: Mapping[str, str]) -> list[str]:
    """A data collection rule association links a resource to one rule *or* one endpoint, and an
    endpoint association has the fixed name ``configurationAccessEndpoint``
    (https://learn.microsoft.com/azure/azure-monitor/essentials/data-collection-endpoint-overview and
    the REST reference "Data Collection Rule Associations - Create": dataCollectionEndpointId "The
    resource ID of the data collection endpoint that is to be associated", one of the two).
    """
    rule, endpoint = inputs.get("dataCollectionRuleId"), inputs.get("dataCollectionEndpointId")
    if (rule is None) == (endpoint is None):
        return [f"data collection rule association {name}: set exactly one of dataCollectionRuleId and "
                "dataCollectionEndpointId"]
    if endpoint is not None and inputs.get("associationName") != "configurationAccessEndpoint":
        return [f"data collection rule association {name}: an endpoint association must be named "
                f"'configurationAccessEndpoint', got {inputs.get('associationName')!r}"]
    return []


def _dcr_flows(name: str, inputs: Mapping[str, Any], kinds: Mapping[str, str]) -> list[str]:
    """Each data flow sends streams some data source declares to destinations the rule declares;
    ARM refuses a rule whose flow names an undeclared destination or stream (InvalidPayload,
    https://learn.microsoft.com/azure/azure-monitor/essentials/data-collection-rule-structure#dataflows).
    """
    destinations = {d.get("name") for group in (inputs.get("destinations") or {}).values()
                    for d in (group if isinstance(group, list) else [group]) if isinstance(d, Mapping)}
    streams = {st for group in (inputs.get("dataSources") or {}).values() if isinstance(group, list)
               for source in group if isinstance(source, Mapping) for st in source.get("streams") or []}
    streams |= set(inputs.get("streamDeclarations") or {})
    errors = []
    for i, flow in enumerate(inputs.get("dataFlows") or []):
        for dest in flow.get("destinations") or []:
            if dest not in destinations:
                declared = ", ".join(sorted(map(str, destinations))) or "none"
                errors.append(f"data collection rule {name}: dataFlows[{i}] sends to {dest!r}, which is not "
                              f"among its destinations ({declared})")
        for stream in flow.get("streams") or []:
            if stream not in streams:
                errors.append(f"data collection rule {name}: dataFlows[{i}] stream {stream!r} comes from no "
                              f"data source ({', '.join(sorted(streams)) or 'none'})")
    return errors


_FIC_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,119}$")
_SA_SUBJECT_RE = re.compile(
    r"^system:serviceaccount:[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")


def _federated_credential(name: str, inputs: Mapping[str, Any], kinds: Mapping[str, str]) -> list[str]:
    """Federated identity credentials on a user-assigned identity: name 3-120 characters of letters,
    digits, '-' and '_' starting alphanumeric; one audience; an https issuer
    (https://learn.microsoft.com/entra/workload-id/workload-identity-federation-considerations#unsupported-characters
    and #federated-identity-credential-considerations). For AKS workload identity the subject is
    ``system:serviceaccount:<namespace>:<service account>`` and the audience
    ``api://AzureADTokenExchange`` (https://learn.microsoft.com/azure/aks/workload-identity-deploy-cluster).
    """
    errors = []
    fic = inputs.get("federatedIdentityCredentialResourceName")
    if not isinstance(fic, str) or not _FIC_NAME_RE.match(fic):
        errors.append(f"federated credential {name}: name {fic!r} must be 3-120 letters, digits, '-' or '_', "
                      "starting alphanumeric")
    audiences = inputs.get("audiences") or []
    if len(audiences) != 1:
        errors.append(f"federated credential {name}: exactly one audience is allowed, got {audiences!r}")
    issuer = inputs.get("issuer")
    if not isinstance(issuer, str) or not issuer.startswith("https://"):
        errors.append(f"federated credential {name}: issuer must be an https URL, got {issuer!r}")
    subject = inputs.get("subject")
    if isinstance(subject, str) and subject.startswith("system:serviceaccount:") and \
            not _SA_SUBJECT_RE.match(subject):
        errors.append(f"federated credential {name}: subject {subject!r} must be "
                      "system:serviceaccount:<namespace>:<service account name> (RFC 1123 names)")
    return errors


RULES: dict[str, tuple[Rule, ...]] = {
    ROLE_ASSIGNMENT: (_principal_type,),
    MANAGED_CLUSTER: (_aks_entra, _aks_network, _aks_monitor, _names(MANAGED_CLUSTER)),
    DCR: (_dcr_flows,),
    DCR_ASSOCIATION: (_dcr_association,),
    FEDERATED_CREDENTIAL: (_federated_credential,),
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
