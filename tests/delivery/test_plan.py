"""The offline plan: the tree text generated from recorded resources; the diagram is
tests/delivery/test_diagram.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from delivery.diagram import draw
from delivery.plan import ROOT, PlanNode, ordered_children, render_tree, walk_dependencies


def _nodes() -> list[PlanNode]:
    def n(urn, typ, parent=None, deps=(), custom=True, inputs=None):
        return PlanNode(urn=urn, type=typ, name=urn, parent=parent, dependencies=list(deps),
                        inputs=inputs or {}, custom=custom)

    return walk_dependencies([
        n("platform", "modelship:index:Platform", custom=False),
        n("rg", "azure-native:resources:ResourceGroup", "platform", inputs={"location": "westeurope"}),
        n("acr", "azure-native:containerregistry:Registry", "platform", ["rg"],
          inputs={"sku": {"name": "Basic"}, "adminUserEnabled": False}),
        n("svc", "modelship:serving:ModelService", "platform", ["acr"], custom=False),
        n("deploy", "kubernetes:argoproj.io/v1alpha1:Rollout", "svc", inputs={"spec": {
            "replicas": 2, "strategy": {"canary": {"steps": [{"setWeight": 10}, {"setWeight": 50}]}},
            "template": {"spec": {"containers": [{
                "image": "acr.io/digits@sha256:abc", "resources": {"limits": {"memory": "512Mi"}},
                "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": True}}]}}}}),
        n("provider", "pulumi:providers:kubernetes", "platform"),
    ])


def test_tree_nests_children_and_shows_key_properties() -> None:
    text = render_tree(_nodes())
    lines = text.splitlines()
    assert lines[0] == "# platform  [modelship:index:Platform]"
    assert "  + acr  [azure-native:containerregistry:Registry]" in lines
    assert '      sku: {"name": "Basic"}' in lines
    assert "      adminUserEnabled: false" in lines
    assert "    + deploy  [kubernetes:argoproj.io/v1alpha1:Rollout]" in lines
    assert "image=acr.io/digits@sha256:abc" in text and "readOnlyRootFilesystem=True" in text
    assert "canary=10/50%+analysis" in text
    assert "4 resources in 2 components" in text


def test_dependencies_on_a_component_point_at_its_resources() -> None:
    svc_deps = {n.urn: n.dependencies for n in _nodes()}
    assert svc_deps["svc"] == ["acr"]
    assert svc_deps["acr"] == ["rg"]


def test_plan_of_the_real_program_under_mocks(tmp_path: Path) -> None:
    import hashlib
    import json

    from delivery.plan import record_stack

    model = tmp_path / "model"
    model.mkdir()
    payload = b"not really onnx"
    (model / "model.onnx").write_bytes(payload)
    (model / "manifest.json").write_text(json.dumps({
        "schema": 1, "name": "digits", "version": "3.2.1", "model_file": "model.onnx",
        "sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload), "framework": "onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}],
        "created_at": "2026-11-23T00:00:00Z", "source_revision": "r1",
    }))
    nodes = walk_dependencies(record_stack("dev", model_dir=model))
    types = {n.type for n in nodes}
    for expected in ("azure-native:containerservice:ManagedCluster",
                     "azure-native:containerregistry:Registry", "azure-native:storage:StorageAccount",
                     "docker-build:index:Image", "kubernetes:argoproj.io/v1alpha1:Rollout"):
        assert expected in types
    text = render_tree(nodes)
    assert "digits-3.2.1@sha256:" in text, "the Rollout's image is pinned by digest"
    deploy = next(n for n in nodes if n.type == "kubernetes:argoproj.io/v1alpha1:Rollout")
    image = next(n for n in nodes if n.type == "docker-build:index:Image")
    test = next(n for n in nodes if n.type == "command:local:Command")
    # The Rollout waits for the container test (through its analysis template, which runs the same
    # image), which waits for the pushed image. The plan drops edges another dependency implies.
    by_urn = {n.urn: n for n in nodes}

    def reaches(node, urn: str) -> bool:
        return urn in node.dependencies or any(reaches(by_urn[d], urn) for d in node.dependencies)

    assert reaches(deploy, test.urn) and image.urn in test.dependencies
    release = next(n for n in nodes if n.type == "kubernetes:helm.sh/v3:Release")
    assert reaches(deploy, release.urn), "the Rollout waits for Argo Rollouts (its CRDs)"
    namespace = next(n for n in nodes if n.type == "kubernetes:core/v1:Namespace")
    assert namespace.dependencies, "Kubernetes objects hang off the cluster through their provider"
    written = draw(nodes, tmp_path / "arch", formats=("dot",))
    assert "ManagedCluster" in written[0].read_text()


def run_plan(out: Path) -> bytes:
    """`make plan` as a separate process (the mocks' registration order varies per process)."""
    proc = subprocess.run([sys.executable, "-m", "delivery.plan", "--out", str(out)], cwd=ROOT,
                          capture_output=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return proc.stdout


def test_two_plan_runs_give_identical_bytes(tmp_path: Path) -> None:
    out = tmp_path / "arch"
    first_text, first_png = run_plan(out), out.with_suffix(".png").read_bytes()
    out.with_suffix(".png").unlink()
    second_text, second_png = run_plan(out), out.with_suffix(".png").read_bytes()
    assert first_text == second_text, "the plan text differs between two runs"
    assert first_png == second_png, "docs/architecture.png differs between two runs"


def test_siblings_come_in_dependency_order_then_by_name() -> None:
    nodes = _nodes()
    shuffled = list(reversed(nodes))

    def order(ns: list[PlanNode]) -> dict:
        return {parent: [n.urn for n in kids] for parent, kids in ordered_children(ns).items()}

    assert order(nodes) == order(shuffled), "registration order must not change the plan"
    # rg has no dependency, acr needs rg, the service needs acr: created-first comes first.
    assert order(nodes)["platform"] == ["provider", "rg", "acr", "svc"]
    assert render_tree(nodes) == render_tree(shuffled)
