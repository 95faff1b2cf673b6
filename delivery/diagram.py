"""The architecture diagram of an offline plan (``docs/architecture.png``, ``make plan``).

:func:`draw` renders the resources :mod:`delivery.plan` recorded with the ``diagrams`` package:
components as clusters, resources as icons, dependencies as dashed edges, plus the user's path
(DNS name -> load balancer -> pods) and the model's path (blob store -> image build -> pods) and a
legend. Node ids are fixed hashes, so the picture is a function of the program alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from delivery.plan import ROLLOUT, PlanNode, ordered_children
from modelship_contract import image as image_contract


def _icon(type_token: str):
    """The diagrams node class for a Pulumi type token (a generic box for unknown types)."""
    from diagrams.azure import compute, identity, storage
    from diagrams.azure import general as az_general
    from diagrams.azure import monitor as az_monitor
    from diagrams.azure import network as az_network
    from diagrams.generic.blank import Blank
    from diagrams.k8s import K8S, clusterconfig, ecosystem, group, network, podconfig, rbac
    from diagrams.k8s import compute as k8s_compute
    from diagrams.onprem.container import Docker
    from diagrams.programming.flowchart import Inspection

    table = {
        "azure-native:resources:ResourceGroup": az_general.Resourcegroups,
        "azure-native:containerregistry:Registry": compute.ContainerRegistries,
        "azure-native:containerservice:ManagedCluster": compute.KubernetesServices,
        "azure-native:storage:StorageAccount": storage.StorageAccounts,
        "azure-native:storage:BlobContainer": storage.BlobStorage,
        "azure-native:storage:BlobServiceProperties": storage.GeneralStorage,
        "azure-native:managedidentity:UserAssignedIdentity": identity.ManagedIdentities,
        "azure-native:managedidentity:FederatedIdentityCredential": identity.ManagedIdentities,
        "azure-native:authorization:RoleAssignment": identity.AzureADRolesAndAdministrators,
        "docker-build:index:Image": Docker,
        "command:local:Command": Inspection,  # the container test by digest, the SBOM step (components/)
        "kubernetes:core/v1:Namespace": group.NS,
        ROLLOUT: k8s_compute.Deploy,
        "kubernetes:argoproj.io/v1alpha1:AnalysisTemplate": k8s_compute.Job,  # runs the analysis Job
        "kubernetes:helm.sh/v3:Release": ecosystem.Helm,
        "kubernetes:core/v1:ConfigMap": podconfig.CM,
        "azure-native:monitor:AzureMonitorWorkspace": az_monitor.Metrics,
        "azure-native:monitor:DataCollectionEndpoint": az_monitor.Monitor,
        "azure-native:monitor:DataCollectionRule": az_monitor.Monitor,
        "azure-native:monitor:DataCollectionRuleAssociation": az_monitor.DiagnosticsSettings,
        "kubernetes:core/v1:Service": network.SVC,
        "kubernetes:core/v1:ServiceAccount": rbac.SA,
        # The icon set has no PodDisruptionBudget (Limits is a LimitRange): the plain Kubernetes logo.
        "kubernetes:policy/v1:PodDisruptionBudget": K8S,
        "kubernetes:autoscaling/v2:HorizontalPodAutoscaler": clusterconfig.HPA,
        "kubernetes:networking.k8s.io/v1:NetworkPolicy": network.Netpol,
        "azure-native:dns:RecordSet": az_network.DNSZones,
    }
    return table.get(type_token, Blank)


def _drawable(nodes: Sequence[PlanNode]) -> list[PlanNode]:
    # Providers and the stack itself are plumbing, not architecture.
    return [n for n in nodes if not n.type.startswith("pulumi:")]


DEPENDS = {"color": "#888888", "style": "dashed"}
"""Edge style: B depends on A (Pulumi creates A first)."""
USER_PATH = {"color": "#1f6feb", "penwidth": "2.5", "fontcolor": "#1f6feb"}
"""Edge style: a user's request."""
MODEL_PATH = {"color": "#d9730d", "penwidth": "2.5", "fontcolor": "#d9730d"}
"""Edge style: the model's bytes, from the data scientist to the pods."""


ROLES = {
    "kubernetes:core/v1:Service": " (load balancer)",
    ROLLOUT: " (pods, canary)",
}
"""What a resource is on the user's path, added to its label."""


def _node_id(key: str) -> str:
    # diagrams names nodes with random uuids, and graphviz lays out by name: fixed ids make the
    # picture a function of the program alone.
    return "n" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _first(nodes: Iterable[PlanNode], type_token: str) -> PlanNode | None:
    return next((n for n in nodes if n.type == type_token), None)


def public_dns_name(nodes: Sequence[PlanNode]) -> str:
    """The LoadBalancer Service's public name (``<dnsLabel>.<region>.cloudapp.azure.com``)."""
    from components.naming import DNS_LABEL_ANNOTATION

    svc = _first(nodes, "kubernetes:core/v1:Service")
    rg = _first(nodes, "azure-native:resources:ResourceGroup")
    annotations = ((svc.inputs.get("metadata") or {}).get("annotations") or {}) if svc else {}
    label = annotations.get(DNS_LABEL_ANNOTATION)
    region = (rg.inputs.get("location") if rg else None) or "<region>"
    return f"{label}.{region}.cloudapp.azure.com" if label else "public IP"


def draw(nodes: Sequence[PlanNode], out_base: Path, title: str = "modelship on Azure",
         formats: Sequence[str] = ("png",)) -> list[Path]:
    """Write ``out_base.<format>``: components as clusters, resources as icons, dependencies as
    dashed edges, plus the user's path (DNS name -> load balancer -> pods) and the model's path
    (data scientist -> blob store -> image -> pods), and a legend for the three kinds of arrow.

    Byte-identical for the same program and config: canonical order and fixed node ids. PNG only
    by default: the SVG that graphviz writes links its icons by absolute local path.
    """
    from diagrams import Cluster, Diagram, Edge
    from diagrams.azure.network import DNSZones
    from diagrams.generic.blank import Blank
    from diagrams.onprem.client import User, Users

    nodes = _drawable(nodes)
    children = ordered_children(nodes)
    drawn: dict[str, Any] = {}
    written = []
    for fmt in formats:
        drawn.clear()
        graph_attr = {"fontsize": "20", "pad": "0.4", "splines": "spline", "nodesep": "0.5", "ranksep": "0.9"}
        with Diagram(title, filename=str(out_base), outformat=fmt, show=False, direction="LR",
                     graph_attr=graph_attr):

            def place(parent: str | None) -> None:
                for n in children.get(parent, []):
                    if n.custom:
                        kind = n.type.split(":")[-1] + ROLES.get(n.type, "")
                        drawn[n.urn] = _icon(n.type)(f"{n.name}\n{kind}", nodeid=_node_id(n.urn))
                    if children.get(n.urn):
                        with Cluster(f"{n.name} ({n.type.split(':')[-1]})"):
                            place(n.urn)

            users = Users("users", nodeid=_node_id("users"))
            scientist = User("data scientist", nodeid=_node_id("data-scientist"))
            dns = DNSZones(f"DNS name\n{public_dns_name(nodes)}", nodeid=_node_id("dns-name"))
            place(None)
            for n in (n for kids in children.values() for n in kids):
                for dep in sorted(n.dependencies):
                    if n.urn in drawn and dep in drawn and dep != n.urn:
                        drawn[dep] >> Edge(**DEPENDS) >> drawn[n.urn]

            def find(type_token: str) -> Any:
                found = _first(nodes, type_token)
                return drawn.get(found.urn) if found else None

            svc, deploy = find("kubernetes:core/v1:Service"), find(ROLLOUT)
            record = find("azure-native:dns:RecordSet")
            blobs, image = find("azure-native:storage:BlobContainer"), find("docker-build:index:Image")
            # The user's path: name resolution, the Service's Azure load balancer, the pods.
            if record is not None:
                users >> Edge(label="custom name", **USER_PATH) >> record >> Edge(**USER_PATH) >> dns
            users >> Edge(label="1. resolve", **USER_PATH) >> dns
            if svc is not None:
                dns >> Edge(label="2. HTTP :80 (load balancer)", **USER_PATH) >> svc
                if deploy is not None:
                    svc >> Edge(label=f"3. pods :{image_contract.PORT}", **USER_PATH) >> deploy
            # The model's path: published to the blob store, baked into the image, run in the pods.
            if blobs is not None:
                scientist >> Edge(label="publish model", **MODEL_PATH) >> blobs
                if image is not None:
                    blobs >> Edge(label="fetched into the build", **MODEL_PATH) >> image
            commands = [n for n in nodes if n.type == "command:local:Command"]

            def command(module: str, commands: list[PlanNode] = commands) -> Any:
                found = next((n for n in commands if f"-m {module} " in str(n.inputs.get("create"))), None)
                return drawn.get(found.urn) if found else None

            test, stored = command("delivery.imagetest"), command("delivery.sbom")
            if image is not None and test is not None:
                image >> Edge(label="container test by digest", **MODEL_PATH) >> test
                image = test  # the Rollout takes its image from the test's output only
            if image is not None and stored is not None:
                image >> Edge(label="SBOM stored beside it", **MODEL_PATH) >> stored
                image = stored  # ... once its SBOM is in the registry
            if image is not None and deploy is not None:
                image >> Edge(label="run by digest", **MODEL_PATH) >> deploy

            with Cluster("Legend"):
                keys = [("depends on (created first)", DEPENDS), ("a user's request", USER_PATH),
                        ("the model's bytes", MODEL_PATH)]
                for i, (text, style) in enumerate(keys):
                    a = Blank("", nodeid=_node_id(f"legend-{i}-a"), width="0.2", height="0.2")
                    b = Blank("", nodeid=_node_id(f"legend-{i}-b"), width="0.2", height="0.2")
                    a >> Edge(label=text, **style) >> b
        written.append(out_base.with_suffix(f".{fmt}"))
    return written
