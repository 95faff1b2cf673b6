"""Offline plan: what the Azure stack would create, printed as a tree and drawn as a diagram.

``python -m delivery.plan`` (``make plan``) runs the real Pulumi program (``__main__.py`` with the
dev stack's settings, ``settings.Settings.from_stack_file``) offline, as :mod:`components.offline`
runs it on the SDK's public mock API: no cloud, no Pulumi CLI, no credentials. It prints every
resource the program registers, nested under its parent component, with its type and the
properties that matter, and writes ``docs/architecture.png`` (:mod:`delivery.diagram`), generated
from the recorded resources and their parent/dependency relations (nothing drawn by hand, so the
picture changes when the program does).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from components.rollout import ROLLOUT_TYPE as ROLLOUT

ROOT = Path(__file__).resolve().parent.parent


KEY_PROPERTIES: dict[str, tuple[str, ...]] = {
    "azure-native:resources:ResourceGroup": ("location",),
    "azure-native:containerregistry:Registry": ("sku", "adminUserEnabled", "publicNetworkAccess"),
    "azure-native:containerservice:ManagedCluster": (
        "kubernetesVersion", "agentPoolProfiles", "oidcIssuerProfile", "securityProfile", "networkProfile",
    ),
    "azure-native:storage:StorageAccount": (
        "sku", "kind", "allowBlobPublicAccess", "allowSharedKeyAccess", "minimumTlsVersion",
    ),
    "azure-native:storage:BlobContainer": ("containerName", "publicAccess"),
    "azure-native:managedidentity:UserAssignedIdentity": ("location",),
    "azure-native:managedidentity:FederatedIdentityCredential": ("subject", "audiences"),
    "azure-native:authorization:RoleAssignment": ("roleDefinitionId", "principalType"),
    "docker-build:index:Image": ("tags", "push", "platforms", "buildArgs"),
    "command:local:Command": ("create",),
    "kubernetes:core/v1:Namespace": ("metadata",),
    ROLLOUT: ("spec",),
    "kubernetes:core/v1:Service": ("spec",),
    "kubernetes:core/v1:ServiceAccount": ("metadata",),
    "kubernetes:policy/v1:PodDisruptionBudget": ("spec",),
    "kubernetes:autoscaling/v2:HorizontalPodAutoscaler": ("spec",),
    "kubernetes:networking.k8s.io/v1:NetworkPolicy": ("spec",),
    "kubernetes:helm.sh/v3:Release": ("chart", "version"),
    "azure-native:monitor:AzureMonitorWorkspace": ("location",),
    "azure-native:monitor:DataCollectionRuleAssociation": ("associationName",),
}
"""Properties printed per type (others print none); long values are summarised."""


@dataclasses.dataclass
class PlanNode:
    """One registered resource, as the plan shows it."""

    urn: str
    type: str
    name: str
    parent: str | None
    """URN of the parent resource (a component), if any."""
    dependencies: list[str]
    """URNs this resource depends on (explicit or through inputs)."""
    inputs: Mapping[str, Any]
    custom: bool = True
    """False for component resources (groups of children)."""
    provider: str = ""
    """URN of the explicit provider (e.g. the cluster's Kubernetes provider), if any."""


def _ints(value: Any) -> Any:
    # The mocks hand numbers back as floats; 2.0 replicas reads better as 2.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def _summary(value: Any, limit: int = 90) -> str:
    value = _ints(value)
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _deployment_summary(spec: Mapping[str, Any]) -> str:
    pod = spec.get("template", {}).get("spec", {})
    containers = pod.get("containers") or [{}]
    c = containers[0]
    sc = c.get("securityContext", {})
    limits = c.get("resources", {}).get("limits", {})
    steps = (spec.get("strategy") or {}).get("canary", {}).get("steps") or []
    weights = [str(_ints(s["setWeight"])) for s in steps if "setWeight" in s]
    canary = f" canary={'/'.join(weights)}%+analysis" if weights else ""
    return (f"replicas={_ints(spec.get('replicas'))}{canary} image={c.get('image')} limits={limits} "
            f"runAsNonRoot={sc.get('runAsNonRoot', pod.get('securityContext', {}).get('runAsNonRoot'))} "
            f"readOnlyRootFilesystem={sc.get('readOnlyRootFilesystem')}")


def key_properties(node: PlanNode) -> dict[str, str]:
    out: dict[str, str] = {}
    if node.type == ROLLOUT and isinstance(node.inputs.get("spec"), Mapping):
        return {"spec": _deployment_summary(node.inputs["spec"])}
    if node.type == "kubernetes:core/v1:Service" and isinstance(node.inputs.get("spec"), Mapping):
        spec = node.inputs["spec"]
        return {"type": str(spec.get("type")), "ports": _summary(spec.get("ports"))}
    for key in KEY_PROPERTIES.get(node.type, ()):
        if key in node.inputs and node.inputs[key] not in (None, "", [], {}):
            out[key] = _summary(node.inputs[key])
    return out


def ordered_children(nodes: Sequence[PlanNode]) -> dict[str | None, list[PlanNode]]:
    """Children of each parent URN (None: the roots) in one canonical order.

    The mocks register resources in whatever order their inputs resolve, which varies from run to
    run; the plan text and the diagram must not. Siblings are ordered by how deep they sit in the
    dependency graph (what is created first comes first), then by name.
    """
    by_urn = {n.urn: n for n in nodes}
    children: dict[str | None, list[PlanNode]] = {}
    for n in nodes:
        children.setdefault(n.parent if n.parent in by_urn else None, []).append(n)
    depth: dict[str, int] = {}

    def rank(urn: str, seen: frozenset[str] = frozenset()) -> int:
        if urn in depth:
            return depth[urn]
        node = by_urn[urn]
        deps = [d for d in node.dependencies if d in by_urn and d not in seen]
        value = 1 + max((rank(d, seen | {urn}) for d in deps), default=-1)
        if not node.custom:  # a component comes when its first resource can
            kids = [rank(k.urn, seen | {urn}) for k in children.get(urn, [])]
            value = max(value, min(kids, default=0))
        depth[urn] = value
        return value

    for kids in children.values():
        kids.sort(key=lambda n: (rank(n.urn), n.name, n.type, n.urn))
    return children


def render_tree(nodes: Sequence[PlanNode]) -> str:
    """Indented tree of resources under their parents, with type and key properties."""
    children = ordered_children(nodes)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for n in children.get(parent, []):
            pad = "  " * depth
            lines.append(f"{pad}{'+' if n.custom else '#'} {n.name}  [{n.type}]")
            for key, value in key_properties(n).items():
                lines.append(f"{pad}    {key}: {value}")
            walk(n.urn, depth + 1)

    walk(None, 0)
    customs = sum(1 for n in nodes if n.custom)
    lines.append(f"\n{customs} resources in {len(nodes) - customs} components "
                 "(+ resource, # component); nothing was created.")
    return "\n".join(lines)


def walk_dependencies(nodes: Iterable[PlanNode]) -> list[PlanNode]:
    """Point dependencies on a component at its resources (components are drawn as clusters), and
    count a resource's explicit provider as a dependency on what that provider depends on (the
    Kubernetes objects then hang off the cluster whose kubeconfig the provider uses)."""
    nodes = list(nodes)
    by_urn = {n.urn: n for n in nodes}
    kids: dict[str, list[str]] = {}
    for n in nodes:
        if n.parent:
            kids.setdefault(n.parent, []).append(n.urn)

    def leaves(urn: str) -> list[str]:
        node = by_urn.get(urn)
        if node is None:
            return []
        if node.type.startswith("pulumi:providers:"):
            return [leaf for d in node.dependencies for leaf in leaves(d)]
        if node.custom:
            return [urn]
        return [leaf for k in kids.get(urn, []) for leaf in leaves(k)]

    resolved: dict[str, set[str]] = {}
    for n in nodes:
        deps = {leaf for d in n.dependencies for leaf in leaves(d)}
        if not deps and n.provider:
            deps = {leaf for leaf in leaves(n.provider)}
        resolved[n.urn] = deps - {n.urn}
    for n in nodes:
        # Drop a dependency that another dependency already implies (one level), to keep edges readable.
        deps = resolved[n.urn]
        n.dependencies = sorted(d for d in deps if not any(d in resolved.get(o, ()) for o in deps))
    return nodes


def record_stack(stack: str = "dev", model_dir: Path | None = None) -> list[PlanNode]:
    """Run the stack program offline (:mod:`components.offline`) and return what it registered.

    The program needs a model directory to describe the image build; ``app/model`` is used when
    ``make up`` has fetched one, else the demo model is trained into a temporary directory.
    """
    import tempfile

    from components import offline
    from settings import Settings

    settings = Settings.from_stack_file(stack, ROOT)
    model_dir = model_dir or ROOT / settings.model_dir
    with tempfile.TemporaryDirectory(prefix="modelship-plan-model-") as tmp:
        if not (model_dir / "manifest.json").is_file():
            from training.train_digits import train

            model_dir = Path(tmp) / "model"
            train(model_dir, settings.model_name, "1.0.0", source_revision="plan")
        run = offline.run_stack(settings, project_root=ROOT, model_dir=model_dir)
    return [
        PlanNode(urn=r.urn, type=r.type, name=r.name, parent=r.parent or None,
                 dependencies=list(r.dependencies), inputs=r.inputs, custom=r.custom,
                 provider=r.provider.rsplit("::", 1)[0] if "::" in r.provider else "")
        for r in run
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m delivery.plan", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "architecture",
                        help="diagram path without extension (default docs/architecture)")
    parser.add_argument("--no-diagram", action="store_true", help="print the tree only")
    args = parser.parse_args(argv)
    from delivery.diagram import draw

    try:
        nodes = walk_dependencies(record_stack())
    except Exception as exc:
        print(f"plan: ERROR: the stack program failed under mocks: {exc}", file=sys.stderr)
        return 1
    print(render_tree(nodes))
    if not args.no_diagram:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for path in draw(nodes, args.out):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
