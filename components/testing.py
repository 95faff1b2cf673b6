"""Recording Pulumi mocks: run the modelship program offline and see every resource it declares.

Used by the component tests, the policy-pack tests and the offline ``plan`` command. No network, no
credentials, no Pulumi CLI: the Python SDK's mock monitor answers every registration.

API
---
``run_stack(settings, project_root=..., model_dir=None, revision="0123456789ab", preview=False)``
    Build the whole stack (``components.stack.build_stack``) under fresh :class:`RecordingMocks`,
    wait until every output is resolved, and return a :class:`StackRun`: a ``list`` of
    :class:`RecordedResource` in registration order, plus ``.outputs`` (stack outputs, resolved
    values), ``.secret_outputs`` (names of outputs that are secret), ``.invokes`` (list of
    :class:`RecordedInvoke`) and ``.warnings`` (messages logged with ``pulumi.log.warn``).
    ``model_dir``: a model directory to use instead of ``<project_root>/<settings.model_dir>``; it is
    copied with a copy of ``app/`` into a temporary project so the build spec sees it at
    ``app/model`` (the repository's ``app/model`` is never touched). Works in pytest and plain scripts;
    do not call it inside a ``@pulumi.runtime.test`` function. ``revision`` is fixed by default so
    runs are reproducible; pass ``revision=None`` to resolve it like ``pulumi up`` does (config,
    CI environment, git).

``RecordingMocks(deployer_principal_type="ServicePrincipal")``
    ``pulumi.runtime.Mocks`` that records resources (``.resources``) and invokes (``.invokes``) and
    fabricates realistic outputs (Azure ids, ACR login server, AKS kubelet identity and an exec-format
    kubeconfig, LoadBalancer IP, docker-build digest). ``call`` raises :class:`UnmockedInvokeError` on
    any invoke token not in ``INVOKES``, so a new invoke cannot slip by unmocked.
    Mocks accept anything, so these do not: every custom resource's inputs are checked against the
    installed SDK's input types (:mod:`components.sdk_types`: unknown keys and enum values), against
    the Azure rules of :mod:`components.arm_rules` (``deployer_principal_type`` is what the identity
    running the program is, as ARM would know it), and Kubernetes objects against strict
    ``kubernetes-validate``. A rejected registration raises :class:`MockRejectedError` and stays in
    ``.rejections``; ``run_stack`` raises it at the end too, so no caller can miss it.

``install_mocks(mocks=None, preview=False) -> RecordingMocks``
    ``pulumi.runtime.set_mocks`` with a :class:`RecordingMonitor`, which also records each resource's
    URN, parent URN, explicit dependencies and provider reference.

``RecordedResource`` fields: ``type``, ``name``, ``urn``, ``parent`` (URN or ""), ``custom``,
``provider`` (provider reference ``urn::id`` or ""), ``dependencies`` (URNs), ``inputs`` and
``outputs`` (camelCase dicts, secrets unwrapped), ``secret_inputs`` (paths of inputs that were
secret), ``id``. Helpers: ``by_type(run, token)``,
``one(run, token)``, ``children_of(run, urn)``.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import logging
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi
from pulumi.runtime.mocks import MockMonitor

from components import arm_rules, crd_schemas, sdk_types

# The fixed identities and fabricated outputs live in components.mock_azure; tests and tools
# import them from here, so they are re-exported.
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
from components.mock_azure import fabricate

if TYPE_CHECKING:
    from settings import Settings

KUBERNETES_VERSION = "1.34.0"
"""Kubernetes version whose schemas the mocks validate objects against (an AKS-supported minor)."""


class UnmockedInvokeError(RuntimeError):
    """The program made an invoke that the mocks do not know."""


class MockRejectedError(ValueError):
    """A registration that Azure, the SDK's schema or the Kubernetes API would refuse."""


@dataclasses.dataclass
class RecordedResource:
    """One resource (custom or component) as the program registered it."""

    type: str
    name: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    custom: bool
    id: str = ""
    urn: str = ""
    parent: str = ""
    provider: str = ""
    dependencies: list[str] = dataclasses.field(default_factory=list)
    secret_inputs: set[str] = dataclasses.field(default_factory=set)
    """Paths (``kubeconfig``, ``spec.x[0]``) of inputs that were secret."""

    @property
    def is_kubernetes_object(self) -> bool:
        """A Kubernetes API object (not the Kubernetes provider, not a Helm release)."""
        return (self.custom and self.type.startswith("kubernetes:")
                and not self.type.startswith("kubernetes:helm.sh/"))


@dataclasses.dataclass
class RecordedInvoke:
    token: str
    args: dict[str, Any]


class StackRun(list):
    """``list[RecordedResource]`` plus what else the run produced."""

    outputs: dict[str, Any]
    secret_outputs: set[str]
    invokes: list[RecordedInvoke]
    warnings: list[str]


_SIG_KEY = "4dabf18193072939515e22adb298388d"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def _unsecret(value: Any, path: str = "", secrets: set[str] | None = None) -> Any:
    """Copy ``value`` with Pulumi's secret envelopes removed, noting each secret's path."""
    if isinstance(value, dict):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            if secrets is not None:
                secrets.add(path)
            return _unsecret(value.get("value"), path, secrets)
        return {k: _unsecret(v, f"{path}.{k}" if path else k, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_unsecret(v, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    return copy.deepcopy(value)


class RecordingMocks(pulumi.runtime.Mocks):
    """Mocks that record and fabricate; see the module docstring."""

    def __init__(self, deployer_principal_type: str = "ServicePrincipal") -> None:
        self.resources: list[RecordedResource] = []
        self.invokes: list[RecordedInvoke] = []
        self.rejections: list[str] = []
        self.principal_kinds = {CLIENT_OBJECT_ID: deployer_principal_type,
                                KUBELET_OBJECT_ID: "ServicePrincipal"}
        """What each principal is in the (mocked) directory: the deployer, the kubelet identity."""
        self._lock = threading.Lock()
        self._current = threading.local()

    # -- invokes -------------------------------------------------------------------------------
    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        with self._lock:
            self.invokes.append(RecordedInvoke(args.token, _unsecret(dict(args.args))))
        problems: list[str] = []
        if args.token in INVOKES:  # an unknown token gets its own error below
            problems = sdk_types.check_invoke(args.token, _unsecret(dict(args.args)))
        if problems:
            with self._lock:
                self.rejections.extend(problems)
            raise MockRejectedError("; ".join(problems))
        if args.token == GET_CLIENT_CONFIG:
            return {"clientId": "pipeline-client-id", "objectId": CLIENT_OBJECT_ID,
                    "subscriptionId": SUBSCRIPTION_ID, "tenantId": TENANT_ID}
        if args.token == LIST_USER_CREDENTIALS:
            if args.args.get("format") != "exec":
                raise UnmockedInvokeError(f"{LIST_USER_CREDENTIALS} mocked only for format=exec")
            server = f"https://{args.args.get('resourceName')}.hcp.westeurope.azmk8s.io:443"
            value = base64.b64encode(exec_kubeconfig(server).encode()).decode()
            return {"kubeconfigs": [{"name": "clusterUser", "value": value}]}
        raise UnmockedInvokeError(
            f"invoke {args.token!r} is not mocked; add it to components.mock_azure.INVOKES and "
            "RecordingMocks.call"
        )

    # -- resources -----------------------------------------------------------------------------
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        secret_paths: set[str] = set()
        inputs = _unsecret(dict(args.inputs), secrets=secret_paths)
        if args.custom:
            problems = self.problems(args.typ, args.name, inputs)
            if problems:
                with self._lock:
                    self.rejections.extend(problems)
                raise MockRejectedError("; ".join(problems))
        rid, outputs = fabricate(args.typ, args.name, inputs)
        record = RecordedResource(type=args.typ, name=args.name, inputs=inputs, outputs=outputs,
                                  custom=bool(args.custom), id=rid or "", provider=args.provider or "",
                                  secret_inputs=secret_paths)
        request = getattr(self._current, "request", None)
        if request is not None:
            record.parent = request.parent
            record.dependencies = list(request.dependencies)
            self._current.record = record
        with self._lock:
            self.resources.append(record)
        return rid, outputs

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
        if typ.startswith("kubernetes:") and "kind" in inputs and sdk_types.args_class(typ) is not None:
            import kubernetes_validate  # a test/plan dependency (requirements-dev.txt), loaded on use

            try:
                kubernetes_validate.validate(inputs, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                found.append(f"{typ} {name}: kubernetes-validate {KUBERNETES_VERSION} strict: {exc.message} "
                             f"at {'.'.join(str(p) for p in exc.path)}")
        return found


HELM_RELEASE = "kubernetes:helm.sh/v3:Release"


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


class RecordingMonitor(MockMonitor):
    """Mock monitor that adds URN, parent and dependencies to each :class:`RecordedResource`."""

    def __init__(self, mocks: RecordingMocks):
        super().__init__(mocks)
        self._recording = mocks

    def RegisterResource(self, request: Any) -> Any:
        local = self._recording._current
        local.request, local.record = request, None
        try:
            response = super().RegisterResource(request)
        finally:
            record, local.request, local.record = local.record, None, None
        if record is not None:
            record.urn = response.urn
        return response


class _WarningHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def install_mocks(mocks: RecordingMocks | None = None, *, preview: bool = False,
                  logger: logging.Logger | None = None,
                  deployer_principal_type: str = "ServicePrincipal") -> RecordingMocks:
    """Install recording mocks for the current process (project ``modelship``, stack ``dev``)."""
    mocks = mocks or RecordingMocks(deployer_principal_type)
    # set_mocks registers the root stack on the current event loop; an earlier asyncio.run() in
    # the same process (a test, a tool) leaves the main thread with none.
    try:
        asyncio.get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_mocks(mocks, project="modelship", stack="dev", preview=preview,
                             monitor=RecordingMonitor(mocks), logger=logger)
    return mocks


def _stage_project(project_root: Path, settings: Settings, model_dir: Path, tmp: Path) -> Path:
    staged = tmp / "project"
    shutil.copytree(project_root / "app", staged / "app",
                    ignore=shutil.ignore_patterns("model", "__pycache__", "wheels"))
    target = staged / settings.model_dir
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(model_dir, target)
    return staged


def run_stack(settings: Settings, *, project_root: Path | str | None = None,
              model_dir: Path | str | None = None, revision: str | None = "0123456789ab",
              preview: bool = False, deployer_principal_type: str = "ServicePrincipal") -> StackRun:
    """Run the whole program under fresh recording mocks; see the module docstring."""
    from components.stack import build_stack
    from settings import DeployerPrincipalType

    root = Path(project_root) if project_root is not None else Path(__file__).resolve().parent.parent
    if settings.deployer_principal_type is DeployerPrincipalType.AUTO:
        # Offline, the identity running the program is the mocks' deployer.
        settings = dataclasses.replace(
            settings, deployer_principal_type=DeployerPrincipalType(deployer_principal_type))
    handler = _WarningHandler()
    logger = logging.getLogger(f"modelship.mocks.{id(handler)}")
    logger.propagate = False
    logger.addHandler(handler)
    mocks = install_mocks(preview=preview, logger=logger, deployer_principal_type=deployer_principal_type)
    result: dict[str, Any] = {}

    def program(project: Path) -> pulumi.Output[Any]:
        stack = build_stack(settings, project, revision=revision)
        names = list(stack.outputs)
        outs = [pulumi.Output.from_input(stack.outputs[n]) for n in names]

        async def secrets() -> set[str]:
            return {n for n, o in zip(names, outs, strict=True) if await o.is_secret()}

        secret_names = pulumi.Output.from_input(_as_future(secrets()))
        return pulumi.Output.all(pulumi.Output.all(*outs), secret_names).apply(
            lambda pair: result.update(outputs=dict(zip(names, pair[0], strict=True)), secret=pair[1])
        )

    with tempfile.TemporaryDirectory(prefix="modelship-plan-") as tmp:
        project = _stage_project(root, settings, Path(model_dir), Path(tmp)) if model_dir else root
        try:
            pulumi.runtime.test(program)(project)
        except Exception as exc:
            if mocks.rejections:  # the engine wraps the mocks' error in layers of its own; say it plainly
                raise MockRejectedError("the mocks rejected what Azure would: "
                                        + "; ".join(mocks.rejections)) from None
            raise exc

    if mocks.rejections:
        raise MockRejectedError("the mocks rejected what Azure would: " + "; ".join(mocks.rejections))
    run = StackRun(mocks.resources)
    run.outputs = result.get("outputs", {})
    run.secret_outputs = result.get("secret", set())
    run.invokes = list(mocks.invokes)
    run.warnings = list(handler.messages)
    return run


def _as_future(coro: Any) -> Any:
    import asyncio

    return asyncio.ensure_future(coro)


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
