"""Run the modelship program offline and record every resource it declares: no cloud, no CLI.

The offline plan (``make plan``, :mod:`delivery.plan`) and the test mocks (:mod:`components.testing`)
both run the stack this way. It is built on the Pulumi SDK's public mock API: ``pulumi.runtime.Mocks``
answers each registration and invoke, and ``pulumi.runtime.set_mocks`` installs it with a monitor
that also records each resource's URN, parent, dependencies and provider. The answers are realistic
fabricated outputs (:mod:`components.mock_azure`): Azure ids, the ACR login server, the AKS kubelet
identity and an exec-format kubeconfig, the LoadBalancer IP, the image digest.

API
---
``run_stack(settings, project_root=..., model_dir=None, revision=..., preview=False, mocks=None)``
    Build the whole stack (``components.stack.build_stack``) under fresh :class:`OfflineMocks` (or
    ``mocks``), wait until every output is resolved, and return a :class:`StackRun`: a ``list`` of
    :class:`RecordedResource` in registration order, plus ``.outputs`` (stack outputs, resolved
    values), ``.secret_outputs`` (names of outputs that are secret), ``.invokes`` (list of
    :class:`RecordedInvoke`) and ``.warnings`` (messages logged with ``pulumi.log.warn``).
    ``model_dir``: a model directory to use instead of ``<project_root>/<settings.model_dir>``; it is
    copied with a copy of ``app/`` into a temporary project so the build spec sees it at
    ``app/model`` (the repository's ``app/model`` is never touched). Do not call it inside a
    ``@pulumi.runtime.test`` function. ``revision`` is fixed by default so runs are reproducible;
    ``revision=None`` resolves it like ``pulumi up`` does (config, CI environment, git).

``OfflineMocks``
    Records resources (``.resources``) and invokes (``.invokes``) and fabricates outputs. ``call``
    raises :class:`UnmockedInvokeError` on any invoke token not in ``mock_azure.INVOKES``, so a new
    invoke cannot slip by. A subclass refuses registrations by overriding :meth:`OfflineMocks.problems`
    and :meth:`OfflineMocks.invoke_problems` (the test mocks check the SDK's types, ARM's rules and
    the Kubernetes schemas); a refused one raises :class:`MockRejectedError` and stays in ``.rejections``.

``install_mocks(mocks, preview=False)``
    ``pulumi.runtime.set_mocks`` with a :class:`RecordingMonitor` (project ``modelship``, stack ``dev``).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi
from pulumi.runtime.mocks import MockMonitor

from components.mock_azure import (
    CLIENT_OBJECT_ID,
    GET_CLIENT_CONFIG,
    INVOKES,
    LIST_USER_CREDENTIALS,
    SUBSCRIPTION_ID,
    TENANT_ID,
    exec_kubeconfig,
    fabricate,
)

if TYPE_CHECKING:
    from settings import Settings


STACK_REFERENCE = "pulumi:pulumi:StackReference"


class UnmockedInvokeError(RuntimeError):
    """The program made an invoke that the offline run does not know."""


class MockRejectedError(ValueError):
    """A registration that Azure, the SDK's schema or the Kubernetes API would refuse."""


@dataclasses.dataclass
class RecordedResource:
    """One resource (custom or component) as the program registered it."""

    type: str
    name: str
    inputs: dict[str, Any]
    """camelCase inputs, secrets unwrapped."""
    outputs: dict[str, Any]
    custom: bool
    id: str = ""
    urn: str = ""
    parent: str = ""
    """URN of the parent, or ""."""
    provider: str = ""
    """Provider reference ``urn::id``, or ""."""
    dependencies: list[str] = dataclasses.field(default_factory=list)
    """URNs this resource depends on (explicit or through inputs)."""
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


def unsecret(value: Any, path: str = "", secrets: set[str] | None = None) -> Any:
    """Copy ``value`` with Pulumi's secret envelopes removed, noting each secret's path in ``secrets``."""
    if isinstance(value, dict):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            if secrets is not None:
                secrets.add(path)
            return unsecret(value.get("value"), path, secrets)
        return {k: unsecret(v, f"{path}.{k}" if path else k, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [unsecret(v, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    return copy.deepcopy(value)


class OfflineMocks(pulumi.runtime.Mocks):
    """Mocks that record and fabricate; see the module docstring."""

    def __init__(self, stack_outputs: dict[str, dict[str, Any]] | None = None) -> None:
        self.stack_outputs = dict(stack_outputs or {})
        """Outputs of each stack a StackReference may read, by fully qualified name."""
        self.resources: list[RecordedResource] = []
        self.invokes: list[RecordedInvoke] = []
        self.rejections: list[str] = []
        self._lock = threading.Lock()
        self._current = threading.local()

    def problems(self, typ: str, name: str, inputs: dict[str, Any]) -> list[str]:
        """Why this custom resource would be refused (none here; the test mocks check it)."""
        return []

    def invoke_problems(self, token: str, args: dict[str, Any]) -> list[str]:
        """Why this invoke would be refused (none here; the test mocks check it)."""
        return []

    def _reject(self, problems: list[str]) -> None:
        with self._lock:
            self.rejections.extend(problems)
        raise MockRejectedError("; ".join(problems))

    # -- invokes -------------------------------------------------------------------------------
    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        with self._lock:
            self.invokes.append(RecordedInvoke(args.token, unsecret(dict(args.args))))
        if args.token in INVOKES:  # an unknown token gets its own error below
            problems = self.invoke_problems(args.token, unsecret(dict(args.args)))
            if problems:
                self._reject(problems)
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
            "OfflineMocks.call"
        )

    # -- resources -----------------------------------------------------------------------------
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        secret_paths: set[str] = set()
        inputs = unsecret(dict(args.inputs), secrets=secret_paths)
        if args.typ == STACK_REFERENCE:
            return self._stack_reference(args, inputs)
        if args.custom:
            problems = self.problems(args.typ, args.name, inputs)
            if problems:
                self._reject(problems)
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


    def _stack_reference(self, args: pulumi.runtime.MockResourceArgs,
                         inputs: dict[str, Any]) -> tuple[str, dict]:
        # Pulumi's own resource: its only input names a stack, which must be one we were given.
        name = inputs.get("name", args.name)
        if name not in self.stack_outputs:
            self._reject([f"StackReference {name!r}: no such stack (known: "
                          f"{', '.join(self.stack_outputs) or 'none'})"])
        outputs = {"name": name, "outputs": copy.deepcopy(self.stack_outputs[name]), "secretOutputNames": []}
        with self._lock:
            self.resources.append(RecordedResource(type=args.typ, name=args.name, inputs=inputs,
                                                   outputs=outputs, custom=True, id=name))
        return name, outputs


class RecordingMonitor(MockMonitor):
    """Mock monitor that adds URN, parent and dependencies to each :class:`RecordedResource`."""

    def __init__(self, mocks: OfflineMocks):
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


def install_mocks(mocks: OfflineMocks, *, preview: bool = False,
                  logger: logging.Logger | None = None, stack: str = "dev") -> OfflineMocks:
    """Install ``mocks`` for the current process (project ``modelship``, stack ``stack``)."""
    # set_mocks registers the root stack on the current event loop; an earlier asyncio.run() in
    # the same process (a test, a tool) leaves the main thread with none.
    try:
        asyncio.get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_mocks(mocks, project="modelship", stack=stack, preview=preview,
                             organization="organization", monitor=RecordingMonitor(mocks), logger=logger)
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
              preview: bool = False, mocks: OfflineMocks | None = None,
              deployer_principal_type: str = "ServicePrincipal",
              stack_outputs: dict[str, dict[str, Any]] | None = None,
              stack: str = "dev") -> StackRun:
    """Run the whole program as stack ``stack`` under ``mocks`` (fresh :class:`OfflineMocks` by
    default); see the module docstring. ``deployer_principal_type`` stands in for ``auto``:
    offline, nothing can ask the directory what the identity running the program is."""
    from components.deployer import DeployerPrincipalType
    from components.stack import build_stack

    root = Path(project_root) if project_root is not None else Path(__file__).resolve().parent.parent
    if settings.deployer_principal_type is DeployerPrincipalType.AUTO:
        settings = dataclasses.replace(
            settings, deployer_principal_type=DeployerPrincipalType(deployer_principal_type))
    handler = _WarningHandler()
    logger = logging.getLogger(f"modelship.offline.{id(handler)}")
    logger.propagate = False
    logger.addHandler(handler)
    mocks = install_mocks(mocks if mocks is not None else OfflineMocks(stack_outputs), preview=preview,
                          logger=logger, stack=stack)
    result: dict[str, Any] = {}

    def program(project: Path) -> pulumi.Output[Any]:
        stack = build_stack(settings, project, revision=revision)
        names = list(stack.outputs)
        outs = [pulumi.Output.from_input(stack.outputs[n]) for n in names]

        async def secrets() -> set[str]:
            return {n for n, o in zip(names, outs, strict=True) if await o.is_secret()}

        secret_names = pulumi.Output.from_input(asyncio.ensure_future(secrets()))
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
