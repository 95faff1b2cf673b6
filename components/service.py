"""ModelService: the model server on Kubernetes, released by canary, reachable on a public URL.

Creates a namespace enforcing the *restricted* Pod Security Standard, a NetworkPolicy admitting
only the server port, an Argo Rollouts **Rollout** (startup/readiness/liveness probes on the
server's Open Inference Protocol health endpoints, requests and limits sized from the model,
non-root read-only pods without a service-account token) whose canary steps and **AnalysisTemplate**
come from the one analysis definition (:mod:`components.rollout`), the analysis Job's service
account (workload identity, no secret), a PodDisruptionBudget, a HorizontalPodAutoscaler on CPU
targeting the Rollout, and a LoadBalancer Service carrying the Azure DNS label. With a DNS zone
configured, an A record points at the Service's public IP too.

Pass the Kubernetes provider through ``opts`` (``providers=[cluster.provider]``), and through
``depends_on`` the AcrPull role assignment (pods are not scheduled before the kubelet may pull)
and the Argo Rollouts release (it installs the CRDs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import dns

from components import rollout as argo
from components.naming import AZURE_DNS_LABEL_RE, DNS_LABEL_ANNOTATION
from components.sizing import PROBE_PERIOD_S, Resources, for_model
from modelship_contract.canary import DEFAULT as DEFAULT_ANALYSIS
from modelship_contract.canary import POD_MODEL_NAME_LABEL, POD_MODEL_VERSION_LABEL, AnalysisDefinition

# The image's runtime contract (port, non-root uid, health routes, model path), under local names.
from modelship_contract.image import LIVE_PATH, MODEL_DIR_ENV, READY_PATH
from modelship_contract.image import MODEL_DIR as MODEL_MOUNT
from modelship_contract.image import PORT as APP_PORT
from modelship_contract.image import UID as APP_UID


@dataclass
class DnsZoneArgs:
    zone_name: str
    """Existing Azure DNS zone, e.g. ``models.example.com``."""
    resource_group_name: pulumi.Input[str]
    """Resource group of the zone."""
    record_name: str
    """Relative record name inside the zone."""
    ttl: int = 300


@dataclass
class CanaryArgs:
    prometheus_url: pulumi.Input[str]
    """Prometheus query endpoint the analysis Job reads (the Azure Monitor workspace's)."""
    analysis_client_id: pulumi.Input[str]
    """Client id of the managed identity federated with ``service_account`` (Monitoring Data Reader)."""
    service_account: str = "modelship-analysis"
    """Service account the analysis Job runs as (the federated credential names it)."""
    definition: AnalysisDefinition = DEFAULT_ANALYSIS
    """Steps, queries and thresholds: the same definition ``make up`` uses."""


@dataclass
class ModelServiceArgs:
    image: pulumi.Input[str]
    """Image reference pinned by digest (``...@sha256:...``)."""
    model_name: str
    """Model name (labels, container name)."""
    model_version: str
    """Model version (labels)."""
    dns_label: str
    """Azure DNS label of the public IP (RFC 1123)."""
    location: str
    """Azure region, for the ``<label>.<region>.cloudapp.azure.com`` name."""
    canary: CanaryArgs
    """Where the canary analysis reads its metrics, and as whom."""
    namespace: str = "modelship"
    replicas: int = 2
    max_replicas: int = 5
    target_cpu_utilization: int = 70
    cpu_request: str = "250m"
    cpu_limit: str = "1"
    model_size: int | None = None
    """Model file size in bytes (the manifest's ``size``): memory and start-up budget follow it.
    None: sized as a small model (the floors of :mod:`components.sizing`)."""
    memory_request: str | None = None
    """None: derived from ``model_size``; a value below that is refused."""
    memory_limit: str | None = None
    """None: derived from ``model_size`` (the load peak); a value below that is refused."""
    startup_seconds: int | None = None
    """Startup probe budget; None: derived from ``model_size``."""
    dns_zone: DnsZoneArgs | None = None
    """Also create an A record in this zone; None: the cloudapp name only."""
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    """Resources the Rollout must wait for (the AcrPull role assignment, the Argo Rollouts release)."""

    def __post_init__(self) -> None:
        if self.replicas < 2:
            raise ValueError(
                f"replicas must be >= 2 for a rolling update without downtime, got {self.replicas}"
            )
        if self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) must be >= replicas ({self.replicas})")
        if not 1 <= self.target_cpu_utilization <= 100:
            raise ValueError(f"target_cpu_utilization must be 1-100, got {self.target_cpu_utilization}")
        if not AZURE_DNS_LABEL_RE.match(self.dns_label):
            raise ValueError(
                f"dns_label {self.dns_label!r} is not an Azure DNS name label: 3-63 lowercase letters, "
                "digits and '-', starting with a letter and ending alphanumeric"
            )
        if isinstance(self.image, str) and "@sha256:" not in self.image:
            raise ValueError(f"image must be pinned by digest (name@sha256:...), got {self.image!r}")
        self.resources: Resources = for_model(
            self.model_size or 1, model=f"{self.model_name}@{self.model_version}",
            memory_request=self.memory_request, memory_limit=self.memory_limit,
            startup_seconds=self.startup_seconds,
            keys=("memory_request", "memory_limit", "startup_seconds"),
        )


HPA_SCALE_UP_WINDOW_S = 60
"""How long the HPA must keep wanting more pods before it adds them."""
ROLLOUT_NAME = "model-server"
"""Name of the Rollout (the pipelines wait on ``rollout/model-server``)."""
ANALYSIS_TEMPLATE_NAME = "model-server-canary"


class ModelService(pulumi.ComponentResource):
    """Namespace, NetworkPolicy, Rollout and AnalysisTemplate, PDB, HPA, LoadBalancer Service, A record."""

    rollout_name: str = ROLLOUT_NAME
    """Name of the Rollout in ``namespace``."""
    url: pulumi.Output[str]
    """Public URL of the service."""
    public_ip: pulumi.Output[str]
    """Public IP of the LoadBalancer."""

    def __init__(self, name: str, args: ModelServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelship:serving:ModelService", name, None, opts)
        self._name = name
        self._labels = {
            "app.kubernetes.io/name": "modelship",
            "app.kubernetes.io/instance": name,
            "app.kubernetes.io/component": "model-server",
        }
        self.namespace = self._create_namespace(args)
        self.analysis_account = self._create_analysis_account(args)
        self.analysis_template = self._create_analysis_template(args)
        self.rollout = self._create_rollout(args)
        self.pdb = self._create_pdb()
        self.hpa = self._create_hpa(args)
        self.network_policy = self._create_network_policy()
        self.service = self._create_service(args)
        self.public_ip = self.service.status.apply(_ingress_ip)
        self.record: dns.RecordSet | None = None
        if args.dns_zone is not None:
            self.record = self._create_dns_record(args.dns_zone)
            self.url = pulumi.Output.from_input(f"http://{args.dns_zone.record_name}.{args.dns_zone.zone_name}")
        else:
            self.url = pulumi.Output.from_input(f"http://{args.dns_label}.{args.location}.cloudapp.azure.com")
        self.register_outputs({"url": self.url, "publicIp": self.public_ip})

    def _child(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)

    def _metadata(self, labels: dict[str, str] | None = None, **extra: object) -> k8s.meta.v1.ObjectMetaArgs:
        """Metadata of an object in the service's namespace."""
        return k8s.meta.v1.ObjectMetaArgs(namespace=self.namespace.metadata.name,
                                          labels=labels or self._labels, **extra)

    def _selector(self) -> k8s.meta.v1.LabelSelectorArgs:
        return k8s.meta.v1.LabelSelectorArgs(match_labels=self._labels)

    def _create_namespace(self, args: ModelServiceArgs) -> k8s.core.v1.Namespace:
        return k8s.core.v1.Namespace(
            f"{self._name}-ns",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=args.namespace,
                labels={
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            ),
            opts=self._child(),
        )

    def _create_analysis_account(self, args: ModelServiceArgs) -> k8s.core.v1.ServiceAccount:
        # The workload-identity webhook gives pods of this account a federated token for this client.
        return k8s.core.v1.ServiceAccount(
            f"{self._name}-analysis-sa",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=args.canary.service_account, namespace=self.namespace.metadata.name,
                labels={**self._labels, "app.kubernetes.io/component": "analysis"},
                annotations={argo.WORKLOAD_IDENTITY_CLIENT_ANNOTATION: args.canary.analysis_client_id},
            ),
            automount_service_account_token=False,
            opts=self._child(),
        )

    def _create_analysis_template(self, args: ModelServiceArgs) -> k8s.apiextensions.CustomResource:
        canary = args.canary

        def spec(values: list) -> dict:
            image, url, namespace = values
            return argo.analysis_template(ANALYSIS_TEMPLATE_NAME, namespace, image, canary.service_account,
                                          url, canary.definition, uid=APP_UID)["spec"]

        return k8s.apiextensions.CustomResource(
            f"{self._name}-analysis",
            api_version=argo.API_VERSION, kind="AnalysisTemplate",
            metadata=self._metadata(name=ANALYSIS_TEMPLATE_NAME),
            spec=pulumi.Output.all(args.image, canary.prometheus_url,
                                   self.namespace.metadata.name).apply(spec),
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on),
        )

    def _create_rollout(self, args: ModelServiceArgs) -> k8s.apiextensions.CustomResource:
        pod_labels = {
            **self._labels,
            POD_MODEL_NAME_LABEL: args.model_name,
            POD_MODEL_VERSION_LABEL: args.model_version,
        }
        template = k8s.core.v1.PodTemplateSpecArgs(
            metadata=k8s.meta.v1.ObjectMetaArgs(labels=pod_labels), spec=self._pod_spec(args),
        )
        spec = argo.rollout_spec(
            self._labels, template, args.canary.definition, ANALYSIS_TEMPLATE_NAME, replicas=args.replicas,
            # A canary that never becomes ready (crash loop, no capacity) aborts back to stable.
            progress_deadline_seconds=args.resources.startup_seconds + argo.PROGRESS_GRACE_SECONDS,
        )
        return k8s.apiextensions.CustomResource(
            f"{self._name}-rollout",
            api_version=argo.API_VERSION, kind="Rollout",
            metadata=self._metadata(pod_labels, name=ROLLOUT_NAME),
            spec=spec,
            # The HPA owns the replica count once the Rollout exists: `replicas` is declared for the
            # first creation only (a Rollout without one starts at 1 pod, argo-rollouts#3689), then
            # re-applying it on every `up` would scale a busy service back down.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*args.depends_on, self.analysis_template],
                ignore_changes=["spec.replicas"],
            ),
        )

    def _create_pdb(self) -> k8s.policy.v1.PodDisruptionBudget:
        return k8s.policy.v1.PodDisruptionBudget(
            f"{self._name}-pdb",
            metadata=self._metadata(),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(min_available=1, selector=self._selector()),
            opts=self._child(),
        )

    def _create_hpa(self, args: ModelServiceArgs) -> k8s.autoscaling.v2.HorizontalPodAutoscaler:
        return k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{self._name}-hpa",
            metadata=self._metadata(),
            spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
                # The Rollout's scale subresource (spec.replicas, status.HPAReplicas, status.selector).
                scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
                    api_version=argo.API_VERSION, kind="Rollout", name=ROLLOUT_NAME,
                ),
                min_replicas=args.replicas,
                max_replicas=args.max_replicas,
                metrics=[k8s.autoscaling.v2.MetricSpecArgs(
                    type="Resource",
                    resource=k8s.autoscaling.v2.ResourceMetricSourceArgs(
                        name="cpu",
                        target=k8s.autoscaling.v2.MetricTargetArgs(
                            type="Utilization", average_utilization=args.target_cpu_utilization,
                        ),
                    ),
                )],
                # A canary step starts pods that hash and load the model (a CPU burst the HPA would
                # read as load, argo-rollouts#4369): a scale-up must be wanted for a whole window.
                behavior=k8s.autoscaling.v2.HorizontalPodAutoscalerBehaviorArgs(
                    scale_up=k8s.autoscaling.v2.HPAScalingRulesArgs(
                        stabilization_window_seconds=HPA_SCALE_UP_WINDOW_S),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.rollout]),
        )

    def _create_network_policy(self) -> k8s.networking.v1.NetworkPolicy:
        # Only the server port is reachable, whoever asks (the Azure load balancer keeps client IPs).
        return k8s.networking.v1.NetworkPolicy(
            f"{self._name}-netpol",
            metadata=self._metadata(),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=self._selector(),
                policy_types=["Ingress"],
                ingress=[k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=APP_PORT, protocol="TCP")],
                )],
            ),
            opts=self._child(),
        )

    def _create_service(self, args: ModelServiceArgs) -> k8s.core.v1.Service:
        return k8s.core.v1.Service(
            f"{self._name}-svc",
            metadata=self._metadata(annotations={DNS_LABEL_ANNOTATION: args.dns_label}),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="LoadBalancer",
                selector=self._labels,
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=80, target_port="http", protocol="TCP")],
            ),
            opts=self._child(),
        )

    def _create_dns_record(self, zone: DnsZoneArgs) -> dns.RecordSet:
        return dns.RecordSet(
            f"{self._name}-a",
            zone_name=zone.zone_name,
            resource_group_name=zone.resource_group_name,
            relative_record_set_name=zone.record_name,
            record_type="A",
            ttl=zone.ttl,
            a_records=[dns.ARecordArgs(ipv4_address=self.public_ip)],
            opts=self._child(),
        )

    @staticmethod
    def _pod_spec(args: ModelServiceArgs) -> k8s.core.v1.PodSpecArgs:
        sized = args.resources

        def probe(path: str, period: int, failures: int) -> k8s.core.v1.ProbeArgs:
            return k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path=path, port="http"),
                period_seconds=period,
                timeout_seconds=2,
                failure_threshold=failures,
            )

        return k8s.core.v1.PodSpecArgs(
            # The server calls no Kubernetes API: no token mounted.
            automount_service_account_token=False,
            enable_service_links=False,
            termination_grace_period_seconds=30,
            security_context=k8s.core.v1.PodSecurityContextArgs(
                run_as_non_root=True,
                run_as_user=APP_UID,
                run_as_group=APP_UID,
                fs_group=APP_UID,
                seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
            ),
            containers=[k8s.core.v1.ContainerArgs(
                name="server",
                image=args.image,
                image_pull_policy="IfNotPresent",
                ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=APP_PORT, protocol="TCP")],
                env=[k8s.core.v1.EnvVarArgs(name=MODEL_DIR_ENV, value=MODEL_MOUNT)],
                resources=k8s.core.v1.ResourceRequirementsArgs(
                    requests={"cpu": args.cpu_request, "memory": sized.memory_request},
                    limits={"cpu": args.cpu_limit, "memory": sized.memory_limit},
                ),
                # Hashing and loading the model take time in proportion to its size: the startup
                # probe allows the whole budget before readiness and liveness count.
                startup_probe=probe(READY_PATH, PROBE_PERIOD_S, sized.startup_failure_threshold),
                readiness_probe=probe(READY_PATH, period=5, failures=3),
                liveness_probe=probe(LIVE_PATH, period=10, failures=3),
                security_context=k8s.core.v1.SecurityContextArgs(
                    allow_privilege_escalation=False,
                    read_only_root_filesystem=True,
                    run_as_non_root=True,
                    capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
                    seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
                ),
                volume_mounts=[k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")],
            )],
            # The root filesystem is read-only; the server and its libraries still need /tmp.
            volumes=[k8s.core.v1.VolumeArgs(
                name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="64Mi"),
            )],
        )


def _ingress_ip(status: object) -> str:
    ingress = getattr(getattr(status, "load_balancer", None), "ingress", None) or []
    for entry in ingress:
        if getattr(entry, "ip", None):
            return entry.ip
    return ""
