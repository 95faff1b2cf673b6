"""The offline plan: tree text and diagram generated from recorded resources."""

from __future__ import annotations

from pathlib import Path

from delivery.plan import PlanNode, _walk_dependencies, draw, render_tree


def _nodes() -> list[PlanNode]:
    def n(urn, typ, parent=None, deps=(), custom=True, inputs=None):
        return PlanNode(urn=urn, type=typ, name=urn, parent=parent, dependencies=list(deps),
                        inputs=inputs or {}, custom=custom)

    return _walk_dependencies([
        n("platform", "modelship:index:Platform", custom=False),
        n("rg", "azure-native:resources:ResourceGroup", "platform", inputs={"location": "westeurope"}),
        n("acr", "azure-native:containerregistry:Registry", "platform", ["rg"],
          inputs={"sku": {"name": "Basic"}, "adminUserEnabled": False}),
        n("svc", "modelship:serving:ModelService", "platform", ["acr"], custom=False),
        n("deploy", "kubernetes:apps/v1:Deployment", "svc", inputs={"spec": {
            "replicas": 2, "template": {"spec": {"containers": [{
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
    assert "    + deploy  [kubernetes:apps/v1:Deployment]" in lines
    assert "image=acr.io/digits@sha256:abc" in text and "readOnlyRootFilesystem=True" in text
    assert "4 resources in 2 components" in text


def test_dependencies_on_a_component_point_at_its_resources() -> None:
    svc_deps = {n.urn: n.dependencies for n in _nodes()}
    assert svc_deps["svc"] == ["acr"]
    assert svc_deps["acr"] == ["rg"]


def test_diagram_files_are_written_from_the_nodes(tmp_path: Path) -> None:
    written = draw(_nodes(), tmp_path / "arch", formats=("png", "dot"))
    assert [p.name for p in written] == ["arch.png", "arch.dot"]
    svg = (tmp_path / "arch.dot").read_text()
    # Every custom resource but the provider is a node; the component is a cluster.
    for label in ("rg", "acr", "deploy", "svc (ModelService)"):
        assert label in svg
    assert "provider" not in svg
    assert (tmp_path / "arch.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
    nodes = _walk_dependencies(record_stack("dev", model_dir=model))
    types = {n.type for n in nodes}
    for expected in ("azure-native:containerservice:ManagedCluster",
                     "azure-native:containerregistry:Registry", "azure-native:storage:StorageAccount",
                     "docker-build:index:Image", "kubernetes:apps/v1:Deployment"):
        assert expected in types
    text = render_tree(nodes)
    assert "digits-3.2.1@sha256:" in text, "the Deployment's image is pinned by digest"
    deploy = next(n for n in nodes if n.type == "kubernetes:apps/v1:Deployment")
    image = next(n for n in nodes if n.type == "docker-build:index:Image")
    assert image.urn in deploy.dependencies
    namespace = next(n for n in nodes if n.type == "kubernetes:core/v1:Namespace")
    assert namespace.dependencies, "Kubernetes objects hang off the cluster through their provider"
    written = draw(nodes, tmp_path / "arch", formats=("dot",))
    assert "ManagedCluster" in written[0].read_text()
