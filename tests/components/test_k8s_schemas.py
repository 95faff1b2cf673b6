"""Every Kubernetes object the program declares is valid for a current Kubernetes, strictly."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions

from components.testing import RecordedResource, run_stack
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
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Namespace", "Namespace",
                     "NetworkPolicy", "PodDisruptionBudget", "Service"]
    for obj in objects:
        manifest = {k: v for k, v in obj.inputs.items()}
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_strict_validation_catches_a_misspelt_field(project: Path) -> None:
    deployment = next(r for r in _manifests(project) if r.inputs["kind"] == "Deployment").inputs
    pod = deployment["spec"]["template"]["spec"]
    pod["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True  # wrong case
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
