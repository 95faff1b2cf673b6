"""The policy pack run over the resources the real Pulumi program declares (recording mocks).

The default stack must pass every mandatory rule; a deliberately bad configuration, made by
mutating one recorded input, must make exactly the rule that owns it fire.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from components.testing import RecordedResource, run_stack
from policy.rules import ANALYSIS_TEMPLATE, IMAGE_BUILD, POLICIES, PROD_POLICY, ROLLOUT, check_resource
from settings import Settings

GOVERNED = {
    "azure-native:storage:StorageAccount", "azure-native:storage:BlobContainer",
    "azure-native:containerregistry:Registry", "azure-native:containerservice:ManagedCluster",
    ROLLOUT, ANALYSIS_TEMPLATE, "kubernetes:core/v1:Service",
}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> list[RecordedResource]:
    from training.train_digits import train

    model_dir = tmp_path_factory.mktemp("policy") / "model"
    train(model_dir, "digits", "1.2.3")
    settings = Settings.from_mapping({"storageAccountName": "modelshipmodels", "registryName": "modelshipacr",
                                      "dnsLabel": "modelship-dev"})
    return [r for r in run_stack(settings, model_dir=model_dir) if r.custom]


def _one(recorded: list[RecordedResource], token: str) -> RecordedResource:
    (found,) = [r for r in recorded if r.type == token]
    return found


def _pod(props: dict) -> dict:
    return props["spec"]["template"]["spec"]


def _job_pod(props: dict) -> dict:
    return props["spec"]["metrics"][0]["provider"]["job"]["spec"]["template"]["spec"]


def test_default_stack_declares_every_governed_type(recorded):
    assert {r.type for r in recorded} >= GOVERNED
    service = _one(recorded, "kubernetes:core/v1:Service")
    assert service.inputs["spec"]["type"] == "LoadBalancer"  # so the DNS-label rule really applies


def test_default_stack_has_no_violation(recorded):
    violations = [v for r in recorded for v in check_resource(r.type, r.name, r.inputs)]
    assert violations == []


def _set_container(key: str, value) -> Callable[[dict], None]:
    def mutate(props: dict) -> None:
        _pod(props)["containers"][0]["securityContext"][key] = value
        _pod(props).setdefault("securityContext", {}).pop("runAsNonRoot", None)
    return mutate


def _set_privilege(key: str, value) -> Callable[[dict], None]:
    def mutate(props: dict) -> None:
        _pod(props)["containers"][0]["securityContext"][key] = value
    return mutate


def _drop_limits(props: dict) -> None:
    del _pod(props)["containers"][0]["resources"]["limits"]


def _tag_only_image(props: dict) -> None:
    container = _pod(props)["containers"][0]
    container["image"] = container["image"].split("@")[0]


def _service_principal(props: dict) -> None:
    del props["identity"]
    props["servicePrincipalProfile"] = {"clientId": "app-id", "secret": "s3cret"}


BAD = [
    ("azure-native:storage:StorageAccount", lambda p: p.update(allowBlobPublicAccess=True),
     "storage-no-public-blob-access"),
    ("azure-native:storage:BlobContainer", lambda p: p.update(publicAccess="Container"),
     "storage-no-public-blob-access"),
    ("azure-native:storage:StorageAccount", lambda p: p.update(minimumTlsVersion="TLS1_1"),
     "storage-tls-1-2"),
    ("azure-native:storage:StorageAccount", lambda p: p.pop("allowSharedKeyAccess"),
     "storage-shared-key-disabled"),
    ("azure-native:containerregistry:Registry", lambda p: p.update(adminUserEnabled=True),
     "acr-admin-disabled"),
    ("azure-native:containerservice:ManagedCluster", lambda p: p.update(enableRBAC=False),
     "aks-rbac-managed-identity"),
    ("azure-native:containerservice:ManagedCluster", _service_principal, "aks-rbac-managed-identity"),
    (ROLLOUT, _set_container("runAsNonRoot", False),
     "containers-non-root-read-only-limits"),
    (ROLLOUT, _set_container("readOnlyRootFilesystem", False),
     "containers-non-root-read-only-limits"),
    (ROLLOUT, _drop_limits, "containers-non-root-read-only-limits"),
    (ROLLOUT, _tag_only_image, "images-pinned-by-digest"),
    ("kubernetes:core/v1:Service", lambda p: p["metadata"].pop("annotations"), "loadbalancer-dns-label"),
    (ROLLOUT, _set_privilege("allowPrivilegeEscalation", True),
     "containers-no-privilege"),
    (ROLLOUT, lambda p: _pod(p).update(hostNetwork=True),
     "pods-isolated-from-the-node"),
    # The analysis Job runs in the model's namespace too: the same rules hold its pod.
    (ANALYSIS_TEMPLATE, lambda p: _job_pod(p)["containers"][0].update(image="python:3.12"),
     "images-pinned-by-digest"),
    (ANALYSIS_TEMPLATE, lambda p: _job_pod(p)["containers"][0]["securityContext"].update(
        readOnlyRootFilesystem=False), "containers-non-root-read-only-limits"),
    (ANALYSIS_TEMPLATE, lambda p: _job_pod(p)["containers"][0]["securityContext"].update(privileged=True),
     "containers-no-privilege"),
]


@pytest.mark.parametrize(("token", "mutate", "policy"), BAD,
                         ids=[f"{b[2]}-{i}" for i, b in enumerate(BAD)])
def test_bad_configuration_fires_its_rule(recorded, token, mutate, policy):
    resource = _one(recorded, token)
    props = copy.deepcopy(resource.inputs)
    mutate(props)
    violations = check_resource(resource.type, resource.name, props)
    assert {v.policy for v in violations} == {policy}, violations
    assert all(resource.name in v.message for v in violations)


def test_every_rule_has_a_bad_configuration():
    # The prod rule is configured per stack; its bad configurations are the prod tests below.
    assert {b[2] for b in BAD} | {PROD_POLICY} == {p.name for p in POLICIES}


def _prod(*digests: str) -> dict:
    return {PROD_POLICY: {"stage": "prod", "verifiedDigests": list(digests)}}


def _rollout_digest(recorded) -> str:
    image = _pod(_one(recorded, ROLLOUT).inputs)["containers"][0]["image"]
    return image.split("@")[1]


def test_prod_rule_passes_the_digest_dev_verified_and_is_silent_in_dev(recorded):
    rollout = _one(recorded, ROLLOUT)
    verified = _prod(_rollout_digest(recorded))
    assert check_resource(rollout.type, rollout.name, rollout.inputs, config=verified) == []
    dev = {PROD_POLICY: {"stage": "dev", "verifiedDigests": []}}
    assert check_resource(rollout.type, rollout.name, rollout.inputs, config=dev) == []


def test_prod_rule_refuses_a_digest_dev_did_not_verify(recorded):
    rollout = _one(recorded, ROLLOUT)
    other = "sha256:" + "0" * 64
    violations = check_resource(rollout.type, rollout.name, rollout.inputs, config=_prod(other))
    assert {v.policy for v in violations} == {PROD_POLICY}
    assert "is not among the digests dev verified (" + other in violations[0].message


def test_prod_rule_refuses_a_tag_and_an_empty_list(recorded):
    rollout = _one(recorded, ROLLOUT)
    props = copy.deepcopy(rollout.inputs)
    _tag_only_image(props)
    verified = _prod(_rollout_digest(recorded))
    tagged = check_resource(rollout.type, rollout.name, props, config=verified)
    assert any(v.policy == PROD_POLICY and "pinned by digest" in v.message for v in tagged)
    none = check_resource(rollout.type, rollout.name, rollout.inputs, config=_prod())
    assert [v.policy for v in none] == [PROD_POLICY] and "none were passed" in none[0].message


def test_prod_rule_refuses_any_image_build(recorded):
    # The dev stack builds its image: the same program run as prod would be refused before deploying.
    build = _one(recorded, IMAGE_BUILD)
    verified = _prod(_rollout_digest(recorded))
    violations = check_resource(build.type, build.name, build.inputs, config=verified)
    assert [v.policy for v in violations] == [PROD_POLICY]
    assert "never builds" in violations[0].message


def test_prod_stack_resources_pass_only_with_the_digest_the_pipeline_passes(tmp_path):
    """The prod stack's own Rollout (under mocks, deploying dev's release) against the policy
    configuration scripts/cloud-deploy.sh deploy-prod writes: dev's digest passes, any other is refused."""
    import json

    from components.promotion import Release
    from tests.components.test_prod_stack import DEV, PROD, _prod_settings

    digest = "sha256:" + "5" * 64
    release = Release(f"modelshipdevacr01.azurecr.io/modelship/digits:r-digits-1@{digest}", digest,
                      "digits", "1.0.0", 1000).to_output()
    (tmp_path / "app").mkdir()
    prod = [r for r in run_stack(_prod_settings(release), project_root=tmp_path,
                                 stack_outputs={DEV: {"release": release}, PROD: {}}, stack="prod")
            if r.custom]
    assert not [r for r in prod if r.type == IMAGE_BUILD]
    rollout = _one(prod, ROLLOUT)
    for resource in prod:
        assert check_resource(resource.type, resource.name, resource.inputs, config=_prod(digest)) == []
    unverified = json.loads(json.dumps(_prod("sha256:" + "6" * 64)))
    violations = check_resource(rollout.type, rollout.name, rollout.inputs, config=unverified)
    assert [v.policy for v in violations] == [PROD_POLICY]
    assert f"@{digest} is not among the digests dev verified" in violations[0].message
