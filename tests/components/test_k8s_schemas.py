"""Every Kubernetes object the program declares is valid for a current Kubernetes, strictly."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions

from components import crd_schemas
from components.testing import RecordedResource, RecordingMocks, embedded_builtins, run_stack
from tests.components.conftest import make_settings

KUBERNETES_VERSION = "1.34.0"
"""An AKS-supported minor with schemas shipped by kubernetes-validate."""


def _manifests(project: Path) -> list[RecordedResource]:
    run = run_stack(make_settings(), project_root=project)
    return [r for r in run if r.is_kubernetes_object]


def test_version_is_shipped_by_the_validator() -> None:
    assert KUBERNETES_VERSION in all_versions()


def test_all_objects_pass_strict_validation(project: Path) -> None:
    objects = _manifests(project)
    kinds = sorted(r.inputs["kind"] for r in objects)
    assert kinds == ["AnalysisTemplate", "ConfigMap", "HorizontalPodAutoscaler", "Namespace", "Namespace",
                     "NetworkPolicy", "PodDisruptionBudget", "Rollout", "Service", "ServiceAccount"]
    for obj in objects:
        manifest = {k: v for k, v in obj.inputs.items()}
        if obj.type.startswith("kubernetes:argoproj.io/"):
            # Custom resources: their CRD schema, and the built-in objects inside them.
            assert crd_schemas.errors(manifest) == []
            inner = embedded_builtins(obj.name, manifest)
            assert inner, obj.type
            for _, builtin in inner:
                kubernetes_validate.validate(builtin, KUBERNETES_VERSION, strict=True)
        else:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_strict_validation_catches_a_misspelt_field_in_the_rollouts_pods(project: Path) -> None:
    rollout = next(r for r in _manifests(project) if r.inputs["kind"] == "Rollout")
    pod = rollout.inputs["spec"]["template"]["spec"]
    pod["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True  # wrong case
    ((_, template),) = embedded_builtins(rollout.name, rollout.inputs)
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(template, KUBERNETES_VERSION, strict=True)
    assert any("readOnlyRootFileSystem" in e for e in crd_schemas.errors(rollout.inputs))
    problems = RecordingMocks().problems(rollout.type, rollout.name, rollout.inputs)
    assert any("kubernetes-validate" in p and "readOnlyRootFileSystem" in p for p in problems), problems
    assert any("CRD schema" in p and "readOnlyRootFileSystem" in p for p in problems), problems


def test_the_analysis_job_is_a_valid_batch_job(project: Path) -> None:
    template = next(r for r in _manifests(project) if r.inputs["kind"] == "AnalysisTemplate")
    job = template.inputs["spec"]["metrics"][0]["provider"]["job"]["spec"]
    job["backoffLimit"] = "none"
    problems = RecordingMocks().problems(template.type, template.name, template.inputs)
    assert any("kubernetes-validate" in p and "backoffLimit" in p for p in problems), problems
