"""Recording Pulumi mocks for the tests: the offline run of :mod:`components.offline`, checked.

Used by the component tests and the policy-pack tests. No network, no credentials, no Pulumi CLI.
The offline plan (``make plan``) uses :mod:`components.offline` directly: product code never
imports this module (an import-linter contract).

API
---
``run_stack(settings, project_root=..., model_dir=None, revision="0123456789ab", preview=False)``
    :func:`components.offline.run_stack` under fresh :class:`RecordingMocks`: a :class:`StackRun`
    (``list`` of :class:`RecordedResource`, plus ``.outputs``, ``.secret_outputs``, ``.invokes``
    and ``.warnings``). Works in pytest and plain scripts; do not call it inside a
    ``@pulumi.runtime.test`` function.

``RecordingMocks(deployer_principal_type="ServicePrincipal")``
    :class:`components.offline.OfflineMocks` that do not accept anything: every custom resource's
    inputs are checked against the installed SDK's input types (:mod:`components.sdk_types`: unknown
    keys and enum values), against the Azure rules of :mod:`components.arm_rules`
    (``deployer_principal_type`` is what the identity running the program is, as ARM would know it),
    and Kubernetes objects against strict ``kubernetes-validate``; invokes against the SDK's invoke
    types. A rejected registration raises :class:`MockRejectedError` and stays in ``.rejections``;
    ``run_stack`` raises it at the end too, so no caller can miss it.

``install_mocks(mocks=None, preview=False) -> RecordingMocks``
    ``pulumi.runtime.set_mocks`` with a recording monitor, which also records each resource's
    URN, parent URN, explicit dependencies and provider reference.

``RecordedResource`` fields: ``type``, ``name``, ``urn``, ``parent`` (URN or ""), ``custom``,
``provider`` (provider reference ``urn::id`` or ""), ``dependencies`` (URNs), ``inputs`` and
``outputs`` (camelCase dicts, secrets unwrapped), ``secret_inputs`` (paths of inputs that were
secret), ``id``. Helpers: ``by_type(run, token)``, ``one(run, token)``, ``children_of(run, urn)``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components import arm_rules, crd_schemas, offline, sdk_types

# The fixed identities and fabricated outputs live in components.mock_azure, the recording in
# components.offline; tests import them from here, so they are re-exported.
from components.mock_azure import AKS_SERVER_ID as AKS_SERVER_ID
from components.mock_azure import CLIENT_OBJECT_ID as CLIENT_OBJECT_ID
from components.mock_azure import GET_CLIENT_CONFIG as GET_CLIENT_CONFIG
from components.mock_azure import INVOKES as INVOKES
from components.mock_azure import KUBELET_OBJECT_ID as KUBELET_OBJECT_ID
from components.mock_azure import LIST_USER_CREDENTIALS as LIST_USER_CREDENTIALS
from components.mock_azure import LOAD_BALANCER_IP as LOAD_BALANCER_IP
from components.mock_azure import SUBSCRIPTION_ID as SUBSCRIPTION_ID
from components.mock_azure import TENANT_ID as TENANT_ID
from components.mock_azure import exec_kubeconfig as exec_kubeconfig
from components.offline import STACK_REFERENCE as STACK_REFERENCE
from components.offline import MockRejectedError as MockRejectedError
from components.offline import RecordedInvoke as RecordedInvoke
from components.offline import RecordedResource as RecordedResource
from components.offline import StackRun as StackRun
from components.offline import UnmockedInvokeError as UnmockedInvokeError

if TYPE_CHECKING:
    from settings import Settings

KUBERNETES_VERSION = "1.34.0"
"""Kubernetes version whose schemas the mocks validate objects against (an AKS-supported minor)."""


class RecordingMocks(offline.OfflineMocks):
    """Offline mocks that refuse what Azure, the SDK's types or the Kubernetes API would refuse."""

    def __init__(self, deployer_principal_type: str = "ServicePrincipal",
                 stack_outputs: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__(stack_outputs)
        self.principal_kinds = {CLIENT_OBJECT_ID: deployer_principal_type,
                                KUBELET_OBJECT_ID: "ServicePrincipal"}
        """What each principal is in the (mocked) directory: the deployer, the kubelet identity."""

    def invoke_problems(self, token: str, args: dict[str, Any]) -> list[str]:
        return sdk_types.check_invoke(token, args)

    def problems(self, typ: str, name: str, inputs: dict[str, Any]) -> list[str]:
        """Why Azure, the SDK's types or the Kubernetes API would refuse this resource."""
        found = sdk_types.check_inputs(typ, inputs, name) + arm_rules.check_resource(
            typ, name, inputs, self.principal_kinds)
        if typ == HELM_RELEASE:
            found += helm_release_problems(name, inputs)
        elif typ.startswith("kubernetes:") and sdk_types.args_class(typ) is None:
            # A custom resource: the SDK has no type for it, its CRD's schema is the contract.
            try:
                found += [f"{typ} {name}: CRD schema: {e}" for e in crd_schemas.errors(inputs)]
            except crd_schemas.CrdSchemaError as exc:
                found.append(f"{typ} {name}: {exc}")
        if typ.startswith("kubernetes:") and "kind" in inputs:
            builtin = ([("", inputs)] if sdk_types.args_class(typ) is not None
                       else embedded_builtins(name, inputs))
            for where, obj in builtin:
                found += _kubernetes_validate(f"{typ} {name}{where}", obj)
        return found


HELM_RELEASE = "kubernetes:helm.sh/v3:Release"


def _kubernetes_validate(where: str, obj: dict[str, Any]) -> list[str]:
    import kubernetes_validate  # a test/plan dependency (requirements-dev.txt), loaded on use

    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{where}: kubernetes-validate {KUBERNETES_VERSION} strict: {exc.message} "
                f"at {'.'.join(str(p) for p in exc.path)}"]
    return []


def embedded_builtins(name: str, inputs: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The built-in objects inside a custom resource, to validate as strictly as the built-in kinds.

    A Rollout's ``spec.template`` is a ``PodTemplateSpec`` (checked as a v1 PodTemplate) and each
    Job metric of an AnalysisTemplate is a ``JobSpec`` (checked as a batch/v1 Job); the CRDs copy
    these schemas, kubernetes-validate holds the API server's own.
    """
    kind, spec = inputs.get("kind"), inputs.get("spec") or {}
    meta = {"name": name}
    if kind == "Rollout" and isinstance(spec.get("template"), dict):
        return [(" spec.template", {"apiVersion": "v1", "kind": "PodTemplate", "metadata": meta,
                                    "template": spec["template"]})]
    if kind in ("AnalysisTemplate", "ClusterAnalysisTemplate"):
        return [(f" spec.metrics[{i}].provider.job.spec",
                 {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
                  "spec": m["provider"]["job"]["spec"]})
                for i, m in enumerate(spec.get("metrics") or [])
                if isinstance(m, dict) and isinstance((m.get("provider") or {}).get("job"), dict)]
    return []


def helm_release_problems(name: str, inputs: dict[str, Any]) -> list[str]:
    """What makes a Helm release unreproducible or wrong before Helm even runs.

    The chart cannot be fetched offline, so its inputs are what is checked: a pinned chart version
    from an https repository, and, for a chart whose values contract the stack knows (Argo Rollouts
    at the pinned version), values that fit it exactly.
    """
    from components import argo_rollouts

    where = f"{HELM_RELEASE} {name}"
    found = []
    version = inputs.get("version")
    if not isinstance(version, str) or not re.fullmatch(r"\d+\.\d+\.\d+", version):
        found.append(f"{where}: version must pin an exact chart version (x.y.z), got {version!r}")
    repo = (inputs.get("repositoryOpts") or {}).get("repo")
    if not isinstance(repo, str) or not repo.startswith("https://"):
        found.append(f"{where}: repositoryOpts.repo must be an https chart repository, got {repo!r}")
    if inputs.get("chart") == argo_rollouts.CHART:
        if version != argo_rollouts.CHART_VERSION:
            found.append(f"{where}: chart {argo_rollouts.CHART} {version!r} has no known values contract; "
                         f"the stack pins {argo_rollouts.CHART_VERSION}")
        found += [f"{where}: {e}" for e in
                  crd_schemas.values_errors(inputs.get("values") or {}, argo_rollouts.VALUES_SCHEMA)]
    return found


def install_mocks(mocks: RecordingMocks | None = None, *, preview: bool = False,
                  logger: logging.Logger | None = None,
                  deployer_principal_type: str = "ServicePrincipal",
                  stack_outputs: dict[str, dict[str, Any]] | None = None,
                  stack: str = "dev") -> RecordingMocks:
    """Install recording mocks for the current process (project ``modelship``, stack ``stack``)."""
    mocks = mocks or RecordingMocks(deployer_principal_type, stack_outputs)
    installed = offline.install_mocks(mocks, preview=preview,
                                      logger=logger, stack=stack)
    assert isinstance(installed, RecordingMocks)
    return installed


def run_stack(settings: Settings, *, project_root: Path | str | None = None,
              model_dir: Path | str | None = None, revision: str | None = "0123456789ab",
              preview: bool = False, deployer_principal_type: str = "ServicePrincipal",
              stack_outputs: dict[str, dict[str, Any]] | None = None,
              stack: str = "dev") -> StackRun:
    """Run the whole program as stack ``stack`` under fresh :class:`RecordingMocks`; see the module docstring.
    ``stack_outputs``: the outputs of each stack a ``StackReference`` may read, by name (the prod
    stack reads dev's ``release``); a reference to any other stack is rejected."""
    return offline.run_stack(settings, project_root=project_root, model_dir=model_dir, revision=revision,
                             preview=preview, mocks=RecordingMocks(deployer_principal_type, stack_outputs),
                             deployer_principal_type=deployer_principal_type, stack=stack)


def by_type(resources: Iterable[RecordedResource], type_token: str) -> list[RecordedResource]:
    """All recorded resources of ``type_token``."""
    return [r for r in resources if r.type == type_token]


def one(resources: Iterable[RecordedResource], type_token: str) -> RecordedResource:
    """The single recorded resource of ``type_token`` (error if zero or several)."""
    found = by_type(resources, type_token)
    if len(found) != 1:
        raise AssertionError(f"expected one {type_token}, found {len(found)}")
    return found[0]


def children_of(resources: Iterable[RecordedResource], urn: str) -> list[RecordedResource]:
    """Direct children of the resource with ``urn``."""
    return [r for r in resources if r.parent == urn]
