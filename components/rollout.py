"""Argo Rollouts objects for the model service, generated from the one canary analysis definition.

The cloud runs the same analysis as ``make up``: the Rollout's canary steps are the definition's
steps (``setWeight`` / ``pause`` / inline ``analysis``), and the AnalysisTemplate's one metric is a
Job that runs ``python -m modelserver.canary analyze`` in the very image being released (pinned by
digest), against the Azure Monitor workspace's Prometheus query endpoint, authenticated with
Microsoft Entra Workload ID (the Job's service account is federated with a managed identity that
holds *Monitoring Data Reader* on the workspace; no secret exists). Argo Rollouts fills the two
pod-template hashes (``podTemplateHashValue: Latest`` / ``Stable``), which the managed Prometheus
scrape config relabels into ``rollouts_pod_template_hash``.

The builders return plain dicts in Kubernetes' camelCase (what the API server receives), so tests
validate them against the CRD schemas in ``/work/shared/schemas/argo-rollouts``.
"""

from __future__ import annotations

from typing import Any

from modelship_contract import image as image_contract
from modelship_contract.canary import AnalysisDefinition

API_VERSION = "argoproj.io/v1alpha1"
ROLLOUT_TYPE = f"kubernetes:{API_VERSION}:Rollout"
"""The Pulumi type token of the model server's workload (what plans, tests and policies match)."""
ANALYSIS_TEMPLATE_TYPE = f"kubernetes:{API_VERSION}:AnalysisTemplate"
WORKLOAD_IDENTITY_LABEL = "azure.workload.identity/use"
WORKLOAD_IDENTITY_CLIENT_ANNOTATION = "azure.workload.identity/client-id"
"""Service-account annotation naming the managed identity its pods' tokens are exchanged for."""
PROGRESS_GRACE_SECONDS = 300
"""Added to the pods' start-up budget for the Rollout's progress deadline (scheduling, image pull)."""
CANARY_HASH_ARG = "canary-hash"
STABLE_HASH_ARG = "stable-hash"
JOB_GRACE_SECONDS = 120
"""Added to the definition's max_wait_seconds for the Job's deadline (image pull, start-up)."""


def analysis_command(definition: AnalysisDefinition, prometheus_url: str) -> list[str]:
    """The analysis CLI invocation of the Job (Argo substitutes the ``{{args.*}}``)."""
    return ["python3", "-m", "modelserver.canary", "analyze", "--prometheus", prometheus_url,
            "--canary-hash", f"{{{{args.{CANARY_HASH_ARG}}}}}",
            "--stable-hash", f"{{{{args.{STABLE_HASH_ARG}}}}}",
            "--window-seconds", str(definition.window_seconds),
            "--wait-seconds", str(definition.max_wait_seconds),
            "--auth", "azure-workload-identity"]


def analysis_template(name: str, namespace: str, image: str, service_account: str, prometheus_url: str,
                      definition: AnalysisDefinition, uid: int = image_contract.UID) -> dict[str, Any]:
    """An AnalysisTemplate whose one Job metric passes exactly when the analysis CLI exits 0."""
    security = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    job = {
        "backoffLimit": 0,
        "activeDeadlineSeconds": definition.max_wait_seconds + JOB_GRACE_SECONDS,
        "template": {
            # The label makes the workload-identity webhook project the federated token.
            "metadata": {"labels": {WORKLOAD_IDENTITY_LABEL: "true",
                                    "app.kubernetes.io/component": "analysis"}},
            "spec": {
                "serviceAccountName": service_account,
                "restartPolicy": "Never",
                "securityContext": {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "analysis",
                    "image": image,
                    "command": analysis_command(definition, prometheus_url),
                    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                  "limits": {"cpu": "250m", "memory": "128Mi"}},
                    "securityContext": security,
                }],
            },
        },
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "AnalysisTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "args": [{"name": CANARY_HASH_ARG}, {"name": STABLE_HASH_ARG}],
            "metrics": [{"name": "canary-analysis", "count": 1, "failureLimit": 0,
                         "provider": {"job": {"spec": job}}}],
        },
    }


def canary_strategy(definition: AnalysisDefinition, template_name: str) -> dict[str, Any]:
    """``spec.strategy`` of the Rollout: replica-ratio canary (no mesh), one analysis per step.

    ``maxUnavailable: 0`` and ``maxSurge: 1`` keep serving capacity during every step, as the
    Deployment's rolling update did; no ``trafficRouting`` and no ``dynamicStableScale``, so the
    stable ReplicaSet keeps its pods and the HPA's pod count stays close to ``spec.replicas``.
    """
    args = [{"name": CANARY_HASH_ARG, "valueFrom": {"podTemplateHashValue": "Latest"}},
            {"name": STABLE_HASH_ARG, "valueFrom": {"podTemplateHashValue": "Stable"}}]
    steps: list[dict[str, Any]] = []
    for step in definition.steps:
        steps.append({"setWeight": step.weight})
        if step.hold_seconds:
            steps.append({"pause": {"duration": f"{step.hold_seconds}s"}})
        steps.append({"analysis": {"templates": [{"templateName": template_name}], "args": args}})
    return {"canary": {"maxSurge": 1, "maxUnavailable": 0, "steps": steps}}


def rollout_spec(labels: dict[str, str], pod_template: Any, definition: AnalysisDefinition,
                 template_name: str, replicas: int | None = None,
                 progress_deadline_seconds: int | None = None) -> dict[str, Any]:
    """``spec`` of a Rollout in place of the Deployment: same selector and pod template, canary strategy.

    ``replicas`` is for the first creation only: the HPA (``scaleTargetRef`` kind Rollout) owns the
    count afterwards, so the caller must not re-apply it (Pulumi ``ignore_changes``; a declared count
    fights the HPA on every apply, argo-rollouts#119). With a ``progress_deadline_seconds``, a canary
    that makes no progress for that long (pods never ready) is aborted back to the stable version.
    ``pod_template`` is a ``PodTemplateSpec`` (a dict, or the SDK's ``PodTemplateSpecArgs``).
    """
    spec: dict[str, Any] = {
        "selector": {"matchLabels": labels},
        "template": pod_template,
        "revisionHistoryLimit": 3,
        "strategy": canary_strategy(definition, template_name),
    }
    if replicas is not None:
        spec["replicas"] = replicas
    if progress_deadline_seconds is not None:
        spec["progressDeadlineSeconds"] = progress_deadline_seconds
        spec["progressDeadlineAbort"] = True
    return spec


def rollout(name: str, namespace: str, labels: dict[str, str], pod_template: dict[str, Any],
            definition: AnalysisDefinition, template_name: str, **spec: Any) -> dict[str, Any]:
    """A whole Rollout object (see :func:`rollout_spec`; with no ``replicas``, the HPA's from the start)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": rollout_spec(labels, pod_template, definition, template_name, **spec),
    }
