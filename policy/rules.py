"""The modelship policy rules (Pulumi CrossGuard), all mandatory.

Each rule is a :class:`ResourceValidationPolicy` whose ``validate`` reads the resource's inputs as
the engine passes them (camelCase property names, e.g. ``allowBlobPublicAccess``) and reports
one violation per broken requirement, naming the property and the value it must have.

The module imports nothing but ``pulumi_policy`` so that it runs in the policy pack's own
virtualenv; ``policy/__main__.py`` only wraps :data:`POLICIES` in a ``PolicyPack``.
:func:`check_resource` runs every rule on one resource outside the CLI (tests, offline plans).

Values unknown during ``pulumi preview`` (an image digest not built yet) raise the SDK's
``UnknownValueError``, which the analyzer turns into "can't run during preview"; the rule then
runs for real on ``pulumi up``, before the resource is created.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyCustomTimeouts,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)
from pulumi_policy.proxy import unknown_checking_proxy

STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
BLOB_CONTAINER = "azure-native:storage:BlobContainer"
REGISTRY = "azure-native:containerregistry:Registry"
MANAGED_CLUSTER = "azure-native:containerservice:ManagedCluster"
SERVICE = "kubernetes:core/v1:Service"
ROLLOUT = "kubernetes:argoproj.io/v1alpha1:Rollout"
ANALYSIS_TEMPLATE = "kubernetes:argoproj.io/v1alpha1:AnalysisTemplate"
CLUSTER_ANALYSIS_TEMPLATE = "kubernetes:argoproj.io/v1alpha1:ClusterAnalysisTemplate"

POD_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "kubernetes:core/v1:Pod": ("spec",),
    # Argo Rollouts: the Rollout replaces the Deployment and keeps its pod template in the same place.
    ROLLOUT: ("spec", "template", "spec"),
}
"""Where each workload kind keeps its pod spec: the container rules apply to all of them."""
JOB_METRIC_KINDS = (ANALYSIS_TEMPLATE, CLUSTER_ANALYSIS_TEMPLATE)
"""Argo Rollouts analysis templates: each metric with a Job provider runs a pod
(``spec.metrics[i].provider.job.spec.template.spec``), so the container rules apply to it too."""

ALLOWED_TLS = ("TLS1_2",)
"""The SDK's MinimumTlsVersion enum lists TLS1_3 but documents it as not supported by Azure
Storage ("Minimum TLS version 1.3 version is not supported"); a test keeps this in step."""
ALLOWED_CAPABILITIES = ("NET_BIND_SERVICE",)
"""The only capability a container may add (the restricted Pod Security Standard's list)."""
HOST_NAMESPACES = ("hostNetwork", "hostPID", "hostIPC")
MANAGED_IDENTITY_TYPES = ("SystemAssigned", "UserAssigned")
DNS_LABEL_ANNOTATION = "service.beta.kubernetes.io/azure-dns-label-name"
DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")
# What Azure accepts as a public IP DNS name label (the cloud provider copies the annotation there).
# DNS_LABEL_ANNOTATION, DIGEST_RE and AZURE_DNS_LABEL_RE copy components.naming and the contract (this
# pack imports nothing of the project); tests/policy/test_rules.py keeps them in step.
AZURE_DNS_LABEL_RE = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")

Report = Callable[..., None]


def _get(obj: Any, *path: str) -> Any:
    """Follow ``path`` through nested mappings; ``None`` where a key is missing."""
    for key in path:
        if not isinstance(obj, Mapping) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _seq(obj: Any) -> Sequence:
    return obj if isinstance(obj, Sequence) and not isinstance(obj, str) else ()


# --- Azure storage -------------------------------------------------------------------------


def _no_public_blob_access(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type == STORAGE_ACCOUNT:
        value = args.props.get("allowBlobPublicAccess")
        if value is not False:
            report(f"storage account {args.name}: allowBlobPublicAccess must be false "
                   f"(anonymous blob reads), got {value!r}")
    elif args.resource_type == BLOB_CONTAINER:
        value = args.props.get("publicAccess")
        if value not in (None, "None"):
            report(f"blob container {args.name}: publicAccess must be 'None' or unset, got {value!r}")


def _tls_minimum(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type != STORAGE_ACCOUNT:
        return
    value = args.props.get("minimumTlsVersion")
    if value not in ALLOWED_TLS:
        report(f"storage account {args.name}: minimumTlsVersion must be one of {', '.join(ALLOWED_TLS)}, "
               f"got {value!r}")
    if args.props.get("enableHttpsTrafficOnly") is False:
        report(f"storage account {args.name}: enableHttpsTrafficOnly must not be false")


def _shared_key_disabled(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type != STORAGE_ACCOUNT:
        return
    # Azure treats an unset allowSharedKeyAccess as true, so it must be set explicitly.
    value = args.props.get("allowSharedKeyAccess")
    if value is not False:
        report(f"storage account {args.name}: allowSharedKeyAccess must be false (Entra ID only), "
               f"got {value!r}")


# --- Registry and cluster ------------------------------------------------------------------


def _acr_admin_disabled(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type != REGISTRY:
        return
    # The API default is false; only an explicit true enables the shared admin user.
    value = args.props.get("adminUserEnabled")
    if value not in (None, False):
        report(f"container registry {args.name}: adminUserEnabled must be false or unset, got {value!r}")


def _aks_rbac_identity(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type != MANAGED_CLUSTER:
        return
    if args.props.get("enableRBAC") is not True:
        report(f"AKS cluster {args.name}: enableRBAC must be true, got {args.props.get('enableRBAC')!r}")
    kind = _get(args.props, "identity", "type")
    if kind not in MANAGED_IDENTITY_TYPES:
        report(f"AKS cluster {args.name}: identity.type must be one of {', '.join(MANAGED_IDENTITY_TYPES)} "
               f"(a managed identity, no service principal secret), got {kind!r}")
    if _get(args.props, "servicePrincipalProfile", "secret") is not None:
        report(f"AKS cluster {args.name}: servicePrincipalProfile.secret must not be set; "
               "use the managed identity")


# --- Kubernetes workloads ------------------------------------------------------------------


def _pod_specs(args: ResourceValidationArgs) -> Iterable[tuple[str, Mapping]]:
    """(label, pod spec) for every pod a resource declares: a workload's template, each Job metric."""
    kind = args.resource_type.rsplit(":", 1)[-1]
    path = POD_TEMPLATE_PATHS.get(args.resource_type)
    if path is not None:
        pod = _get(args.props, *path)
        if isinstance(pod, Mapping):
            yield f"{kind} {args.name}", pod
    elif args.resource_type in JOB_METRIC_KINDS:
        for i, metric in enumerate(_seq(_get(args.props, "spec", "metrics"))):
            pod = _get(metric, "provider", "job", "spec", "template", "spec")
            if isinstance(pod, Mapping):
                yield f"{kind} {args.name} metrics[{i}] ({_get(metric, 'name') or '?'}) job", pod


def _containers(args: ResourceValidationArgs) -> Iterable[tuple[str, Mapping, Mapping | None]]:
    """(label, container, pod securityContext) for every container of a workload."""
    for where, pod in _pod_specs(args):
        pod_security = _get(pod, "securityContext")
        for field in ("initContainers", "containers"):
            for i, container in enumerate(_seq(_get(pod, field))):
                if isinstance(container, Mapping):
                    yield f"{where} {field}[{i}] ({container.get('name', '?')})", container, pod_security


def _container_hardening(args: ResourceValidationArgs, report: Report) -> None:
    for label, container, pod_security in _containers(args):
        security = container.get("securityContext")
        non_root = _get(security, "runAsNonRoot")
        if non_root is None:
            non_root = _get(pod_security, "runAsNonRoot")
        if non_root is not True:
            report(f"{label}: securityContext.runAsNonRoot must be true (container or pod), got {non_root!r}")
        if _get(security, "runAsUser") == 0 or (_get(security, "runAsUser") is None
                                                 and _get(pod_security, "runAsUser") == 0):
            report(f"{label}: runAsUser must not be 0 (root)")
        if _get(security, "readOnlyRootFilesystem") is not True:
            report(f"{label}: securityContext.readOnlyRootFilesystem must be true, "
                   f"got {_get(security, 'readOnlyRootFilesystem')!r}")
        limits = _get(container, "resources", "limits")
        missing = [r for r in ("cpu", "memory") if _get(limits, r) in (None, "")]
        if missing:
            report(f"{label}: resources.limits must set {' and '.join(missing)}")


def _no_privilege(args: ResourceValidationArgs, report: Report) -> None:
    for label, container, _ in _containers(args):
        security = container.get("securityContext")
        if _get(security, "privileged") is True:
            report(f"{label}: securityContext.privileged must not be true")
        if _get(security, "allowPrivilegeEscalation") is not False:
            report(f"{label}: securityContext.allowPrivilegeEscalation must be false, "
                   f"got {_get(security, 'allowPrivilegeEscalation')!r}")
        added = [c for c in _seq(_get(security, "capabilities", "add")) if c not in ALLOWED_CAPABILITIES]
        if added:
            report(f"{label}: securityContext.capabilities.add may only hold "
                   f"{', '.join(ALLOWED_CAPABILITIES)}, got {', '.join(map(str, added))}")


def _pod_isolation(args: ResourceValidationArgs, report: Report) -> None:
    for where, pod in _pod_specs(args):
        for field in HOST_NAMESPACES:
            if _get(pod, field) is True:
                report(f"{where}: {field} must not be true (the pod would share the node's namespace)")
        if _seq(_get(pod, "ephemeralContainers")):
            report(f"{where}: ephemeralContainers must not be declared (debug containers bypass "
                   "the pod's hardening)")


def _image_digest(args: ResourceValidationArgs, report: Report) -> None:
    for label, container, _ in _containers(args):
        image = container.get("image")
        if not isinstance(image, str) or not DIGEST_RE.search(image):
            report(f"{label}: image must be pinned by digest (repo@sha256:<64 hex>), got {image!r}")


IMAGE_BUILD = "docker-build:index:Image"
PROD_POLICY = "prod-only-dev-verified-digests"
"""Configured per stack (``--policy-pack-config``): ``{"stage": "prod", "verifiedDigests": [...]}``."""
PROD_CONFIG_SCHEMA = PolicyConfigSchema(properties={
    "stage": {"type": "string", "enum": ["dev", "prod"], "default": "dev"},
    "verifiedDigests": {"type": "array", "items": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
                        "default": []},
})


def _prod_verified_digest(args: ResourceValidationArgs, report: Report) -> None:
    """In prod: no image build, and every image one of the digests dev tested (the pipeline passes them)."""
    config = args.get_config() or {}
    if config.get("stage", "dev") != "prod":
        return
    if args.resource_type == IMAGE_BUILD:
        report(f"image build {args.name}: the prod stack never builds; it deploys the digest dev verified")
        return
    verified = sorted(set(config.get("verifiedDigests") or []))
    for label, container, _ in _containers(args):
        image = container.get("image")
        if not isinstance(image, str) or not DIGEST_RE.search(image):
            report(f"{label}: prod images must be pinned by digest (repo@sha256:<64 hex>), got {image!r}")
        elif image.rsplit("@", 1)[1] not in verified:
            report(f"{label}: {image} is not among the digests dev verified "
                   f"({', '.join(verified) or 'none were passed'}); prod deploys only those")


def _lb_dns_label(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type != SERVICE or _get(args.props, "spec", "type") != "LoadBalancer":
        return
    label = _get(args.props, "metadata", "annotations", DNS_LABEL_ANNOTATION)
    if not isinstance(label, str) or not label:
        report(f"LoadBalancer service {args.name}: annotation {DNS_LABEL_ANNOTATION} must name a DNS label, "
               f"got {label!r}")
    elif not AZURE_DNS_LABEL_RE.match(label):
        report(f"LoadBalancer service {args.name}: annotation {DNS_LABEL_ANNOTATION} {label!r} is not a "
               "DNS label Azure accepts (3-63 lowercase letters, digits and '-', a letter first, "
               "alphanumeric last)")


def _policy(name: str, description: str, validate) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(name=name, description=description, validate=validate,
                                    enforcement_level=EnforcementLevel.MANDATORY)


POLICIES: list[ResourceValidationPolicy] = [
    _policy("storage-no-public-blob-access",
            "Storage accounts set allowBlobPublicAccess=false; blob containers are never public.",
            _no_public_blob_access),
    _policy("storage-tls-1-2",
            "Storage accounts require TLS 1.2 (the newest Azure Storage supports), over HTTPS.",
            _tls_minimum),
    _policy("storage-shared-key-disabled",
            "Storage accounts set allowSharedKeyAccess=false: Entra ID (RBAC) access only.",
            _shared_key_disabled),
    _policy("acr-admin-disabled", "Container registries keep the admin user disabled.", _acr_admin_disabled),
    _policy("aks-rbac-managed-identity",
            "AKS clusters enable Kubernetes RBAC and run with a managed identity.", _aks_rbac_identity),
    _policy("containers-non-root-read-only-limits",
            "Containers run as non-root with a read-only root filesystem and CPU and memory limits.",
            _container_hardening),
    _policy("containers-no-privilege",
            "Containers are not privileged, set allowPrivilegeEscalation=false and add no capability "
            "but NET_BIND_SERVICE.", _no_privilege),
    _policy("pods-isolated-from-the-node",
            "Pods do not use hostNetwork, hostPID or hostIPC, and declare no ephemeral containers.",
            _pod_isolation),
    _policy("images-pinned-by-digest", "Container images are referenced by digest (@sha256:...).",
            _image_digest),
    ResourceValidationPolicy(
        name=PROD_POLICY,
        description="In the prod stage, no image is built and workloads run only digests dev verified.",
        validate=_prod_verified_digest, enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=PROD_CONFIG_SCHEMA),
    _policy("loadbalancer-dns-label",
            f"LoadBalancer services carry a valid Azure DNS label in {DNS_LABEL_ANNOTATION}.", _lb_dns_label),
]
"""Every rule of the pack; all mandatory."""


@dataclasses.dataclass(frozen=True)
class Violation:
    policy: str
    resource: str
    message: str


def validation_args(resource_type: str, name: str, props: Mapping[str, Any],
                    urn: str | None = None,
                    config: Mapping[str, Any] | None = None) -> ResourceValidationArgs:
    """Build the args the analyzer would pass (props wrapped in the SDK's unknown-checking proxy)."""
    opts = PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
                                 custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
                                 additional_secret_outputs=[])
    urn = urn or f"urn:pulumi:test::modelship::{resource_type}::{name}"
    return ResourceValidationArgs(resource_type, unknown_checking_proxy(dict(props)), urn, name, opts, None,
                                  dict(config or {}))


def check_resource(resource_type: str, name: str, props: Mapping[str, Any],
                   policies: Sequence[ResourceValidationPolicy] = POLICIES,
                   config: Mapping[str, Mapping[str, Any]] | None = None) -> list[Violation]:
    """Run every policy's ``validate`` on one resource; return the violations reported.

    ``config`` maps a policy name to its configuration, as ``--policy-pack-config`` would.
    """
    found: list[Violation] = []
    for policy in policies:
        def report(message: str, urn: str | None = None, _name: str = policy.name) -> None:
            found.append(Violation(_name, name, message))

        result = policy.validate(
            validation_args(resource_type, name, props, config=(config or {}).get(policy.name)), report)
        if result is not None:  # our rules are synchronous; an awaitable would be a bug
            raise TypeError(f"policy {policy.name} returned an awaitable")
    return found
