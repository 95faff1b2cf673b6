"""KubernetesCluster: AKS with Entra ID sign-in, workload identity and an autoscaling system pool.

* Managed (system-assigned) identity, Kubernetes RBAC, Entra ID integration with Azure RBAC for
  Kubernetes authorization, local accounts disabled: there is no static admin certificate.
* OIDC issuer + workload identity, so pods get Entra ID tokens without secrets.
* The Azure Monitor metrics add-on (managed Prometheus), which the canary analysis reads; its
  workspace and collection rules are :class:`components.monitoring.ManagedPrometheus`.
* Network policy enforced on the Azure CNI overlay: Cilium (Azure CNI powered by Cilium, eBPF
  dataplane; the default), Azure Network Policy Manager (being retired) or Calico.
* The kubelet identity gets **AcrPull** on the registry; the deploying principal gets the
  *Azure Kubernetes Service RBAC Cluster Admin* role so its kubeconfig can apply manifests.
* ``kubeconfig`` is the user kubeconfig (exec format) converted for a non-interactive kubelogin
  mode, marked secret; ``provider`` is the ``pulumi_kubernetes.Provider`` built from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import containerservice

from components.choices import allowed, choice
from components.kubeconfig import KubeloginMode, decode_kubeconfig
from components.roles import BuiltinRole, PrincipalType, assign_role, client_config


class NetworkPolicy(StrEnum):
    """Network policy engines AKS supports with the Azure CNI overlay.

    ``cilium`` (Azure CNI powered by Cilium, the eBPF dataplane, which it requires) is the default:
    Azure Network Policy Manager (``azure``) is being retired on AKS in favour of it (docs/azure.md).
    """

    CILIUM = "cilium"
    AZURE = "azure"
    CALICO = "calico"


@dataclass
class KubernetesClusterArgs:
    resource_group_name: pulumi.Input[str]
    """Resource group of the cluster."""
    cluster_name: str
    """AKS resource name (also the DNS prefix)."""
    location: pulumi.Input[str]
    """Azure region."""
    registry_id: pulumi.Input[str] | None = None
    """ARM id of the ACR the kubelet pulls from (AcrPull is assigned on it); None: no assignment."""
    kubernetes_version: str | None = None
    """None: the AKS default."""
    vm_size: str = "Standard_D2s_v5"
    """VM size of the system pool."""
    min_count: int = 1
    """Autoscaler lower bound of the system pool."""
    max_count: int = 3
    """Autoscaler upper bound of the system pool."""
    network_policy: NetworkPolicy = NetworkPolicy.CILIUM
    """Network policy engine; ``cilium`` also selects the Cilium dataplane."""
    kubelogin_mode: KubeloginMode = KubeloginMode.AZURECLI
    """Non-interactive kubelogin mode written into the kubeconfig."""
    grant_admin_to_deployer: bool = True
    """Give the identity running ``pulumi up`` cluster-admin through Azure RBAC."""
    managed_prometheus: bool = True
    """Run the Azure Monitor metrics add-on (``azureMonitorProfile.metrics``)."""
    deployer_principal_type: PrincipalType | None = None
    """``User`` or ``ServicePrincipal``: what the identity running ``pulumi up`` is (required with
    ``grant_admin_to_deployer``; ARM refuses a mismatch). See :mod:`components.deployer`."""

    def __post_init__(self) -> None:
        if not 1 <= self.min_count <= self.max_count <= 100:
            raise ValueError(
                f"need 1 <= min_count <= max_count <= 100, got min_count={self.min_count}, "
                f"max_count={self.max_count}"
            )
        self.network_policy = choice(NetworkPolicy, self.network_policy, "network_policy")
        if self.grant_admin_to_deployer:
            self.deployer_principal_type = choice(
                PrincipalType, self.deployer_principal_type, "deployer_principal_type",
                "when grant_admin_to_deployer is set")
        try:
            self.kubelogin_mode = KubeloginMode(self.kubelogin_mode)
        except ValueError:
            # devicecode and interactive wait for someone at a browser: CI would hang.
            raise ValueError(f"kubelogin_mode {self.kubelogin_mode!r} is not allowed; use a non-interactive "
                             f"mode: {allowed(KubeloginMode)}") from None


class KubernetesCluster(pulumi.ComponentResource):
    """AKS cluster, its role assignments, and a Kubernetes provider for it."""

    cluster_name: pulumi.Output[str]
    """AKS resource name."""
    kubeconfig: pulumi.Output[str]
    """Secret. Kubeconfig using ``kubelogin get-token --login <mode>`` (needs kubelogin on PATH)."""
    oidc_issuer_url: pulumi.Output[str]
    """OIDC issuer for workload identity federation."""
    kubelet_object_id: pulumi.Output[str]
    """Object id of the kubelet identity (the one that pulls images)."""

    def __init__(self, name: str, args: KubernetesClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelship:cluster:KubernetesCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        config = client_config(self)

        self.cluster = containerservice.ManagedCluster(
            f"{name}-aks",
            resource_name_=args.cluster_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            dns_prefix=args.cluster_name,
            kubernetes_version=args.kubernetes_version,
            identity=containerservice.ManagedClusterIdentityArgs(
                type=containerservice.ResourceIdentityType.SYSTEM_ASSIGNED,
            ),
            enable_rbac=True,
            disable_local_accounts=True,
            aad_profile=containerservice.ManagedClusterAADProfileArgs(
                managed=True, enable_azure_rbac=True, tenant_id=config.tenant_id,
            ),
            oidc_issuer_profile=containerservice.ManagedClusterOIDCIssuerProfileArgs(enabled=True),
            azure_monitor_profile=containerservice.ManagedClusterAzureMonitorProfileArgs(
                metrics=containerservice.ManagedClusterAzureMonitorProfileMetricsArgs(enabled=True),
            ) if args.managed_prometheus else None,
            security_profile=containerservice.ManagedClusterSecurityProfileArgs(
                workload_identity=containerservice.ManagedClusterSecurityProfileWorkloadIdentityArgs(
                    enabled=True,
                ),
            ),
            agent_pool_profiles=[containerservice.ManagedClusterAgentPoolProfileArgs(
                name="system",
                mode=containerservice.AgentPoolMode.SYSTEM,
                vm_size=args.vm_size,
                os_type=containerservice.OSType.LINUX,
                type=containerservice.AgentPoolType.VIRTUAL_MACHINE_SCALE_SETS,
                enable_auto_scaling=True,
                count=args.min_count,
                min_count=args.min_count,
                max_count=args.max_count,
            )],
            network_profile=containerservice.ContainerServiceNetworkProfileArgs(
                network_plugin=containerservice.NetworkPlugin.AZURE,
                network_plugin_mode=containerservice.NetworkPluginMode.OVERLAY,
                network_policy=args.network_policy,
                # Cilium policy is enforced by the Cilium (eBPF) dataplane, which it requires.
                network_dataplane=(containerservice.NetworkDataplane.CILIUM
                                   if args.network_policy is NetworkPolicy.CILIUM else None),
                load_balancer_sku=containerservice.LoadBalancerSku.STANDARD,
            ),
            opts=pulumi.ResourceOptions.merge(
                child,
                # The autoscaler owns the node count once the pool exists.
                pulumi.ResourceOptions(ignore_changes=["agentPoolProfiles[0].count"]),
            ),
        )

        self.kubelet_object_id = self.cluster.identity_profile.apply(
            lambda profile: profile["kubeletidentity"].object_id
        )
        self.acr_pull: pulumi.Resource | None = None
        if args.registry_id is not None:
            self.acr_pull = assign_role(
                f"{name}-acr-pull", parent=self, config=config, role=BuiltinRole.ACR_PULL,
                principal_id=self.kubelet_object_id, principal_type=PrincipalType.SERVICE_PRINCIPAL,
                scope=args.registry_id,
            )
        self.admin_assignment: pulumi.Resource | None = None
        if args.grant_admin_to_deployer:
            self.admin_assignment = assign_role(
                f"{name}-admin", parent=self, config=config, role=BuiltinRole.AKS_RBAC_CLUSTER_ADMIN,
                principal_id=config.object_id, principal_type=args.deployer_principal_type,
                scope=self.cluster.id,
            )

        # The user credential needs no admin rights and, for Entra ID clusters, no secret: it only
        # names kubelogin and the server. It still lands in state, so it is marked secret.
        credentials = containerservice.list_managed_cluster_user_credentials_output(
            resource_group_name=args.resource_group_name,
            resource_name=self.cluster.name,
            format="exec",
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        mode = args.kubelogin_mode
        self.kubeconfig = pulumi.Output.secret(
            credentials.kubeconfigs.apply(lambda kcs: decode_kubeconfig(kcs[0].value, mode))
        )
        provider_deps = [a for a in (self.admin_assignment,) if a is not None]
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            opts=pulumi.ResourceOptions(parent=self, depends_on=provider_deps),
        )
        self.cluster_name = self.cluster.name
        self.cluster_id = self.cluster.id
        self.oidc_issuer_url = self.cluster.oidc_issuer_profile.apply(
            lambda p: p.issuer_url if p else ""
        )
        self.register_outputs({
            "clusterName": self.cluster_name,
            "kubeconfig": self.kubeconfig,
            "oidcIssuerUrl": self.oidc_issuer_url,
            "kubeletObjectId": self.kubelet_object_id,
        })
