"""ArgoRollouts: the Argo Rollouts controller, installed from its Helm chart into the cluster.

Argo Rollouts is the progressive-delivery engine of the cloud canary: it owns the model service's
Rollout, runs its canary steps and the analysis Job between them, and aborts back to the stable
ReplicaSet when the analysis fails. Its canary works by replica ratio behind a plain Service, so
the cluster needs no service mesh or Gateway API.

A namespace enforcing the *restricted* Pod Security Standard (the chart's pods run non-root,
read-only, without capabilities) and a ``helm.v3.Release`` of the chart pinned in
:data:`CHART_VERSION`. The Release is one Pulumi resource: Helm waits until the controller is
ready (``atomic`` rolls back a failed install or upgrade), and the CRDs it installs exist before
any Rollout is applied (declare those with ``depends_on=[rollouts.release]``).

:data:`VALUES_SCHEMA` is the chart's values contract for the pinned version, written from its
``values.yaml``: the recording mocks check the Release's values against it strictly, as they
check the SDK's types, so a misspelt value fails offline instead of being ignored by Helm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

CHART = "argo-rollouts"
CHART_REPOSITORY = "https://argoproj.github.io/argo-helm"
CHART_VERSION = "2.42.0"
"""Pinned chart version (argoproj/argo-helm ``charts/argo-rollouts``)."""
CONTROLLER_VERSION = "v1.9.1"
"""Controller image tag, pinned explicitly: the CRD schemas the tests validate the Rollout against
(``../shared/schemas/argo-rollouts``) are those of this release line."""
NAMESPACE = "argo-rollouts"

_OBJ: dict[str, Any] = {"type": "object"}
_STR: dict[str, Any] = {"type": "string"}
_BOOL: dict[str, Any] = {"type": "boolean"}
_INT: dict[str, Any] = {"type": "integer"}
_RESOURCES: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {k: {"type": "object", "additionalProperties": {"type": ["string", "integer"]}}
                   for k in ("requests", "limits")},
}
_PDB: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {"enabled": _BOOL, "labels": _OBJ, "annotations": _OBJ,
                   "minAvailable": {"type": ["integer", "string", "null"]},
                   "maxUnavailable": {"type": ["integer", "string", "null"]}},
}


def _closed(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties}


VALUES_SCHEMA: dict[str, Any] = _closed({
    "installCRDs": _BOOL, "keepCRDs": _BOOL, "clusterInstall": _BOOL, "createClusterAggregateRoles": _BOOL,
    "nameOverride": {"type": ["string", "null"]}, "fullnameOverride": {"type": ["string", "null"]},
    "namespaceOverride": _STR, "kubeVersionOverride": _STR, "extraObjects": {"type": "array"},
    "crdAnnotations": _OBJ, "podAnnotations": _OBJ, "podLabels": _OBJ, "serviceAnnotations": _OBJ,
    "imagePullSecrets": {"type": "array"},
    "podSecurityContext": _OBJ, "containerSecurityContext": _OBJ,
    "global": _closed({"deploymentAnnotations": _OBJ, "deploymentLabels": _OBJ,
                       "revisionHistoryLimit": _INT, "dnsConfig": _OBJ}),
    "controller": _closed({
        "component": _STR, "deploymentAnnotations": _OBJ, "deploymentLabels": _OBJ,
        "podAnnotations": _OBJ, "podLabels": _OBJ, "nodeSelector": _OBJ,
        "tolerations": {"type": "array"}, "affinity": _OBJ,
        "logging": _closed({"level": {"enum": ["debug", "info", "warn", "error"]}, "kloglevel": _STR,
                            "format": {"enum": ["text", "json"]}}),
        "topologySpreadConstraints": {"type": "array"}, "terminationGracePeriodSeconds": _INT,
        "lifecycle": _OBJ, "priorityClassName": _STR, "replicas": {"type": "integer", "minimum": 1},
        "image": _closed({"registry": _STR, "repository": _STR, "tag": _STR,
                          "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}}),
        "awsVerifyTargetGroup": _BOOL, "awsTargetGroupBindingAPIVersion": _STR, "albTagKeyResourceID": _STR,
        "selfServiceNotification": _BOOL, "pprofAddress": _STR,
        "extraArgs": {"type": "array", "items": _STR}, "extraEnv": {"type": "array"},
        "extraContainers": {"type": "array"}, "initContainers": {"type": "array"},
        "resources": _RESOURCES, "createClusterRole": _BOOL,
        "containerPorts": _closed({"metrics": _INT, "healthz": _INT}),
        "metrics": _OBJ, "livenessProbe": _OBJ, "readinessProbe": _OBJ, "pdb": _PDB,
        "volumes": {"type": "array"}, "volumeMounts": {"type": "array"},
        "metricProviderPlugins": {"type": "array"}, "stepPlugins": {"type": "array"},
        "trafficRouterPlugins": {"type": "array"}, "createConfigmap": _BOOL,
    }),
    "serviceAccount": _closed({"create": _BOOL, "annotations": _OBJ, "name": _STR}),
    "providerRBAC": _closed({"enabled": _BOOL, "providers": _OBJ, "additionalRules": {"type": "array"}}),
    "dashboard": _closed({"enabled": _BOOL}),
    "notifications": _OBJ,
})
"""JSON schema of the chart's values (``values.yaml`` of :data:`CHART_VERSION`), closed wherever the
stack sets a value: an unknown key is an error, as ``kubectl apply --validate=strict`` would make it."""


@dataclass
class ArgoRolloutsArgs:
    namespace: str = NAMESPACE
    """Namespace of the controller."""
    controller_replicas: int = 2
    """Controller pods (one leads, the other takes over: a node drain never stops a canary)."""

    def __post_init__(self) -> None:
        if self.controller_replicas < 1:
            raise ValueError(f"controller_replicas must be >= 1, got {self.controller_replicas}")


def chart_values(args: ArgoRolloutsArgs) -> dict[str, Any]:
    """The Helm values the stack installs the chart with."""
    return {
        "installCRDs": True,
        # Deleting the stack must not delete every Rollout in the cluster with its CRD.
        "keepCRDs": True,
        "controller": {
            "replicas": args.controller_replicas,
            "image": {"tag": CONTROLLER_VERSION},
            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"},
                          "limits": {"cpu": "500m", "memory": "512Mi"}},
            "pdb": {"enabled": True, "minAvailable": 1},
        },
        # The canary is replica-based behind a plain Service: no traffic router to grant access to.
        "providerRBAC": {"enabled": False},
        # The dashboard is an unauthenticated console; `kubectl argo rollouts get` serves operators.
        "dashboard": {"enabled": False},
    }


class ArgoRollouts(pulumi.ComponentResource):
    """Namespace and Helm release of the Argo Rollouts controller."""

    release: k8s.helm.v3.Release
    """The Helm release; Rollouts and AnalysisTemplates depend on it (it installs their CRDs)."""

    def __init__(self, name: str, args: ArgoRolloutsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelship:delivery:ArgoRollouts", name, None, opts)
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=args.namespace,
                labels={"pod-security.kubernetes.io/enforce": "restricted",
                        "pod-security.kubernetes.io/enforce-version": "latest"},
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name="argo-rollouts",
            chart=CHART,
            version=CHART_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=CHART_REPOSITORY),
            namespace=self.namespace.metadata.name,
            values=chart_values(args),
            # A failed install or upgrade is rolled back, and `up` fails: never a half-installed controller.
            atomic=True,
            cleanup_on_fail=True,
            timeout=600,
            max_history=5,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"namespace": self.namespace.metadata.name, "chartVersion": CHART_VERSION})
