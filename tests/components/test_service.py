"""ModelService: its Args' rules, and the service on its own with a caller's Kubernetes provider."""

from __future__ import annotations

import pulumi
import pytest

from components.rollout import ROLLOUT_TYPE as ROLLOUT
from components.service import CanaryArgs, ModelService, ModelServiceArgs
from components.testing import LOAD_BALANCER_IP, RecordingMocks

PINNED = "acr.azurecr.io/modelship/digits:r1-digits-1@sha256:" + "a" * 64
CANARY = CanaryArgs(prometheus_url="https://amw-1.westeurope.prometheus.monitor.azure.com",
                    analysis_client_id="analysis-client-id")


def service_args(**overrides: object) -> ModelServiceArgs:
    values: dict = {"image": PINNED, "model_name": "digits", "model_version": "1.0.0",
                    "dns_label": "digits-dev", "location": "westeurope", "canary": CANARY}
    return ModelServiceArgs(**{**values, **overrides})


@pytest.mark.parametrize(("overrides", "message"), [
    ({"image": "acr.azurecr.io/modelship/digits:latest"}, "pinned by digest"),
    ({"replicas": 1}, "replicas must be >= 2"),
    ({"replicas": 3, "max_replicas": 2}, r"max_replicas \(2\) must be >= replicas \(3\)"),
    ({"target_cpu_utilization": 0}, "target_cpu_utilization must be 1-100"),
    ({"dns_label": "9digits"}, "dns_label '9digits' is not an Azure DNS name label"),
])
def test_args_refuse(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        service_args(**overrides)


@pulumi.runtime.test
def test_model_service_alone_with_a_given_provider(mocks: RecordingMocks) -> pulumi.Output:
    provider = pulumi.ProviderResource("kubernetes", "k8s", {"kubeconfig": "{}"})
    options: dict[str, pulumi.ResourceOptions] = {}

    def record(args: pulumi.ResourceTransformationArgs) -> None:
        options[args.type_] = args.opts

    service = ModelService("svc", service_args(namespace="team-a", replicas=3, max_replicas=6),
                           opts=pulumi.ResourceOptions(providers=[provider], transformations=[record]))
    # Once created, the replica count belongs to the HPA: `up` must not scale it back.
    assert options[ROLLOUT].ignore_changes == ["spec.replicas"]

    def check(values: list) -> None:
        url, ip, _rollout_id, _hpa_id = values
        assert url == "http://digits-dev.westeurope.cloudapp.azure.com"
        assert ip == LOAD_BALANCER_IP
        rollout = next(r for r in mocks.resources if r.type == ROLLOUT)
        assert rollout.inputs["spec"]["replicas"] == 3  # for the creation only, see ignore_changes
        assert rollout.inputs["spec"]["template"]["spec"]["containers"][0]["image"] == PINNED
        assert rollout.inputs["metadata"]["namespace"] == "team-a"
        assert "pulumi:providers:kubernetes::k8s::" in rollout.provider
        assert not [r for r in mocks.resources if r.type == "azure-native:dns:RecordSet"]
        hpa = next(r for r in mocks.resources if r.type.endswith("HorizontalPodAutoscaler")).inputs["spec"]
        assert hpa["minReplicas"] == 3 and hpa["maxReplicas"] == 6

    # Waiting on the Rollout's and the HPA's ids too: the check reads what the mocks recorded for them.
    return pulumi.Output.all(service.url, service.public_ip, service.rollout.id, service.hpa.id).apply(check)
