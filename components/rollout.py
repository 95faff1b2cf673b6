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
WORKLOAD_IDENTITY_LABEL = "azure.workload.identity/use"
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


def rollout(name: str, namespace: str, labels: dict[str, str], pod_template: dict[str, Any],
            definition: AnalysisDefinition, template_name: str) -> dict[str, Any]:
    """A Rollout in place of the Deployment: same selector and pod template, canary strategy.

    ``spec.replicas`` is left out: the HPA (``scaleTargetRef`` kind Rollout) owns it, as it owned
    the Deployment's (argo-rollouts#119: a declared count fights the HPA on every apply).
    """
    return {
        "apiVersion": API_VERSION,
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": pod_template,
            "revisionHistoryLimit": 3,
            "strategy": canary_strategy(definition, template_name),
        },
    }
