"""ManagedPrometheus: the canary's metrics source, Azure Monitor managed service for Prometheus.

What the cloud canary analysis asks its PromQL of, and how it may ask, with no stored secret:

* an **Azure Monitor workspace** (the Prometheus store; its query endpoint is what the analysis
  Job calls) and the AKS **metrics add-on** collecting into it: a data collection endpoint and a
  data collection rule (``prometheusForwarder`` -> the workspace) in the workspace's region, both
  associated with the cluster. This is what ``az aks update --enable-azure-monitor-metrics`` and
  Microsoft's onboarding template create; the cluster's ``azureMonitorProfile.metrics.enabled``
  (:class:`components.cluster.KubernetesClusterArgs`) starts the agent.
* the **scrape job** for the model server's pods (``ama-metrics-prometheus-config`` in
  ``kube-system``, the add-on's custom scrape config): it keeps the pods' ``http`` port and copies
  Argo Rollouts' pod label ``rollouts-pod-template-hash`` into the series label
  ``rollouts_pod_template_hash``, which is how the analysis tells canary from stable (the same
  label the local Prometheus gives each container).
* the analysis Job's **workload identity**: a user-assigned managed identity with *Monitoring
  Data Reader* on the workspace, and a federated credential that trusts the cluster's OIDC
  issuer for exactly one Kubernetes service account (``system:serviceaccount:<ns>:<name>``).

Pass the Kubernetes provider through ``opts`` (``providers=[cluster.provider]``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import managedidentity, monitor

from components.roles import BuiltinRole, assign_role, client_config
from modelship_contract.canary import SELECTOR_LABEL

PROMETHEUS_STREAM = "Microsoft-PrometheusMetrics"
DESTINATION = "MonitoringAccount1"
ENDPOINT_ASSOCIATION = "configurationAccessEndpoint"
"""The one name Azure accepts for a data collection *endpoint* association."""
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
"""The audience Entra ID expects on a federated service-account token."""
SCRAPE_CONFIGMAP = "ama-metrics-prometheus-config"
"""The metrics add-on reads custom scrape jobs from this ConfigMap in ``kube-system``."""
SCRAPE_JOB = "modelship"
SCRAPE_INTERVAL = "15s"
_NAME_MAX = 44
"""Microsoft's managed Prometheus template cuts DCE and DCR names to 44 characters."""


def msprom_name(location: str, cluster_name: str) -> str:
    """``MSProm-<region>-<cluster>``: at most 44 characters, ending alphanumeric (as Azure names them)."""
    return f"MSProm-{location}-{cluster_name}"[:_NAME_MAX].rstrip("-_")


def scrape_config(namespace: str) -> str:
    """The add-on's custom scrape config (Prometheus YAML, written as JSON) for the model pods."""
    return json.dumps({"scrape_configs": [{
        "job_name": SCRAPE_JOB,
        "scrape_interval": SCRAPE_INTERVAL,
        "metrics_path": "/metrics",
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [namespace]}}],
        "relabel_configs": [
            # Only the model server's pods, only their http port.
            {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
             "regex": "model-server", "action": "keep"},
            {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "http",
             "action": "keep"},
            # Canary or stable: Argo Rollouts labels each ReplicaSet's pods with its template hash.
            {"source_labels": ["__meta_kubernetes_pod_label_rollouts_pod_template_hash"],
             "target_label": SELECTOR_LABEL},
            {"source_labels": ["__meta_kubernetes_pod_label_modelship_io_model_version"],
             "target_label": "model_version"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        ],
    }]}, indent=2)


@dataclass
class ManagedPrometheusArgs:
    resource_group_name: pulumi.Input[str]
    """Resource group of the workspace, the data collection resources and the identity."""
    location: str
    """Region of the workspace; its DCE and DCR must be in the same one."""
    workspace_name: str
    """Azure Monitor workspace name."""
    cluster_id: pulumi.Input[str]
    """ARM id of the AKS cluster whose metrics are collected."""
    cluster_name: str
    """AKS resource name (names the DCE and DCR as Azure does)."""
    oidc_issuer_url: pulumi.Input[str]
    """The cluster's OIDC issuer, trusted by the federated credential."""
    namespace: str
    """Namespace of the model server's pods (scraped) and of the analysis service account."""
    analysis_service_account: str = "modelship-analysis"
    """Kubernetes service account the analysis Job runs as (federated with the identity)."""

    def __post_init__(self) -> None:
        if not 3 <= len(self.workspace_name) <= 44 or not self.workspace_name[0].isalnum():
            raise ValueError(f"workspace_name must be 3-44 characters starting alphanumeric, "
                             f"got {self.workspace_name!r}")


class ManagedPrometheus(pulumi.ComponentResource):
    """Azure Monitor workspace, metrics collection for AKS, scrape job, analysis identity."""

    query_endpoint: pulumi.Output[str]
    """Prometheus query endpoint of the workspace (``https://...prometheus.monitor.azure.com``)."""
    analysis_client_id: pulumi.Output[str]
    """Client id of the analysis identity (the service account's ``azure.workload.identity/client-id``)."""

    def __init__(self, name: str, args: ManagedPrometheusArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelship:monitoring:ManagedPrometheus", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        rg = args.resource_group_name

        self.workspace = monitor.AzureMonitorWorkspace(
            f"{name}-amw", azure_monitor_workspace_name=args.workspace_name,
            resource_group_name=rg, location=args.location, opts=child,
        )
        collection = msprom_name(args.location, args.cluster_name)
        self.endpoint = monitor.DataCollectionEndpoint(
            f"{name}-dce", data_collection_endpoint_name=collection, resource_group_name=rg,
            location=args.location, kind="Linux", opts=child,
        )
        self.rule = monitor.DataCollectionRule(
            f"{name}-dcr", data_collection_rule_name=collection, resource_group_name=rg,
            location=args.location, kind="Linux",
            description="Prometheus metrics of the modelship cluster to its Azure Monitor workspace",
            data_collection_endpoint_id=self.endpoint.id,
            data_sources=monitor.DataCollectionRuleDataSourcesArgs(prometheus_forwarder=[
                monitor.PrometheusForwarderDataSourceArgs(name="PrometheusDataSource",
                                                          streams=[PROMETHEUS_STREAM]),
            ]),
            destinations=monitor.DataCollectionRuleDestinationsArgs(monitoring_accounts=[
                monitor.MonitoringAccountDestinationArgs(account_resource_id=self.workspace.id,
                                                         name=DESTINATION),
            ]),
            data_flows=[monitor.DataFlowArgs(streams=[PROMETHEUS_STREAM], destinations=[DESTINATION])],
            opts=child,
        )
        self.rule_association = monitor.DataCollectionRuleAssociation(
            f"{name}-dcra", association_name=collection, resource_uri=args.cluster_id,
            data_collection_rule_id=self.rule.id,
            description="Prometheus metrics of this cluster; deleting it stops the collection",
            opts=child,
        )
        self.endpoint_association = monitor.DataCollectionRuleAssociation(
            f"{name}-dcea", association_name=ENDPOINT_ASSOCIATION, resource_uri=args.cluster_id,
            data_collection_endpoint_id=self.endpoint.id, opts=child,
        )

        # The analysis Job's identity: read the workspace's metrics, nothing else.
        self.identity = managedidentity.UserAssignedIdentity(
            f"{name}-analysis-id", resource_name_=f"{args.cluster_name}-canary-analysis",
            resource_group_name=rg, location=args.location, opts=child,
        )
        self.federated_credential = managedidentity.FederatedIdentityCredential(
            f"{name}-analysis-fic", federated_identity_credential_resource_name="canary-analysis",
            resource_name_=self.identity.name, resource_group_name=rg,
            issuer=args.oidc_issuer_url,
            subject=f"system:serviceaccount:{args.namespace}:{args.analysis_service_account}",
            audiences=[TOKEN_EXCHANGE_AUDIENCE], opts=child,
        )
        self.reader = assign_role(
            f"{name}-analysis-reader", parent=self, config=client_config(self),
            role=BuiltinRole.MONITORING_DATA_READER, principal_id=self.identity.principal_id,
            principal_type="ServicePrincipal", scope=self.workspace.id,
        )

        self.scrape_config = k8s.core.v1.ConfigMap(
            f"{name}-scrape",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=SCRAPE_CONFIGMAP, namespace="kube-system"),
            data={"prometheus-config": scrape_config(args.namespace)},
            opts=child,
        )

        self.analysis_service_account = args.analysis_service_account
        self.query_endpoint = self.workspace.metrics.apply(
            lambda m: m.prometheus_query_endpoint if m else "")
        self.analysis_client_id = self.identity.client_id
        self.register_outputs({"queryEndpoint": self.query_endpoint,
                               "analysisClientId": self.analysis_client_id})
