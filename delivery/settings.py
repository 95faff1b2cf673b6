"""Settings of the local flow: where and how ``make up`` runs, read from the environment.

One frozen dataclass, :class:`LocalSettings`, validated on creation: a bad value raises a
``ValueError`` that names the variable and what it allows, before anything starts. The container
limits default to the dev stack's (``Pulumi.dev.yaml``, read by ``settings.Settings.from_stack_file``).
Also the local flow's one error type, :class:`DeliveryError`, and its one output line, :func:`log`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path

from components import sizing
from delivery import budget, engine, hygiene
from modelship_contract import image as image_contract
from modelship_contract.manifest import is_alias_name

ROOT = Path(__file__).resolve().parent.parent
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
_MEMORY_RE = re.compile(r"^[1-9][0-9]*[kmg]$")
_CPUS_RE = re.compile(r"^(0\.[0-9]*[1-9][0-9]*|[1-9][0-9]*(\.[0-9]+)?)$")


class DeliveryError(RuntimeError):
    """A step of the local delivery failed; the message names the step and the cause."""


def log(msg: str) -> None:
    print(f"[local] {msg}", flush=True)


def k8s_memory_to_docker(quantity: str) -> str:
    """``512Mi`` -> ``512m`` (Docker's k/m/g are binary units, like Ki/Mi/Gi)."""
    m = re.fullmatch(r"([0-9]+)(Ki|Mi|Gi)", quantity)
    if not m:
        raise ValueError(f"memory quantity {quantity!r} is not one of <n>Ki, <n>Mi, <n>Gi")
    return f"{m.group(1)}{m.group(2)[0].lower()}"


def k8s_cpu_to_docker(quantity: str) -> str:
    """``500m`` -> ``0.5``; ``1`` -> ``1``."""
    if quantity.endswith("m"):
        return f"{int(quantity[:-1]) / 1000:g}"
    return f"{float(quantity):g}"


def deployment_limits() -> tuple[str, str]:
    """The dev stack's container memory and CPU limits (``Pulumi.dev.yaml``), in Docker's notation
    (memory ``""`` when the stack derives it from the model)."""
    from settings import Settings

    stack = Settings.from_stack_file("dev", ROOT)
    memory = k8s_memory_to_docker(stack.memory_limit) if stack.memory_limit else ""
    return memory, k8s_cpu_to_docker(stack.cpu_limit)


def startup_seconds(env: Mapping[str, str]) -> int | None:
    raw = env.get("MODELSHIP_STARTUP_SECONDS", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 10 <= int(raw) <= 3600:
        raise ValueError(f"MODELSHIP_STARTUP_SECONDS must be whole seconds in 10-3600, got {raw!r}")
    return int(raw)


def parse_model_ref(ref: str) -> tuple[str, str]:
    """``digits`` or ``digits@1.1.0`` -> (name, version or ``latest``); a clear error otherwise."""
    from modelstore.errors import ModelStoreError
    from modelstore.store import parse_ref

    try:
        return parse_ref(ref)
    except ModelStoreError as exc:
        raise ValueError(f"MODELSHIP_MODEL / MODEL={ref!r} is not allowed: {exc}; "
                         "use NAME or NAME@VERSION, for example digits@1.1.0") from None


@dataclasses.dataclass(frozen=True)
class LocalSettings:
    """Where and how the local flow runs; every field can be set from the environment."""

    state_dir: Path
    """Registry data, Azurite data, model cache, logs and the deployment record (``MODELSHIP_STATE_DIR``)."""
    context: Path
    """The build context, ``app/`` (``MODELSHIP_CONTEXT``); the model is fetched into ``<context>/model``."""
    instance: str
    """Prefix of container names and value of their ``modelship.instance`` label (``MODELSHIP_INSTANCE``)."""
    port: int = image_contract.PORT
    """Host port of the running service on 127.0.0.1 (``MODELSHIP_PORT``); by default the image's own."""
    registry_port: int = 5000
    """Port of the local registry on 127.0.0.1 (``MODELSHIP_REGISTRY_PORT``)."""
    azurite_port: int = 10000
    """Blob port of Azurite on 127.0.0.1 (``MODELSHIP_AZURITE_PORT``)."""
    model: str = "digits"
    """Model name in the store (``MODELSHIP_MODEL``: ``NAME`` or ``NAME@VERSION``)."""
    model_version: str = "latest"
    """Version to deploy: ``latest`` follows the store's pointer; a version pins it (a rollback is
    ``make up MODEL=digits@1.0.0``)."""
    release_alias: str | None = None
    """The alias whose move released this version (``make watch`` passes it; ``MODEL=digits@production``
    implies it): if the canary rolls the release back, that alias is moved back to the version that
    kept serving (:func:`delivery.model.move_alias_back`)."""
    store_container: str = "models"
    """Blob container of the model store (``MODELSHIP_STORE_CONTAINER``)."""
    repository: str = "modelship/digits"
    """Image repository in the registry (``MODELSHIP_REPOSITORY``)."""
    base_image: str = ""
    """Base image (``MODELSHIP_BASE_IMAGE``); empty = the debootstrap base (:mod:`delivery.baseimage`)."""
    memory: str = ""
    """Container memory limit (``MODELSHIP_MEMORY``); default: the stack's ``memoryLimit``, and when
    that is empty too, derived from the model's size (``components.sizing``) once it is fetched."""
    startup_seconds: int | None = None
    """How long a container may take to answer ready (``MODELSHIP_STARTUP_SECONDS``): the smoke
    test's wait and the healthcheck's start period; None: derived from the model's size."""
    cpus: str = "1"
    """Container CPU limit (``MODELSHIP_CPUS``); default: the stack's ``cpuLimit``."""
    keep: int = hygiene.DEFAULT_KEEP
    """Images and model-cache entries kept after each ``up`` (``MODELSHIP_KEEP``)."""

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.instance):
            raise ValueError(
                f"MODELSHIP_INSTANCE {self.instance!r} is not allowed: use 1-31 lowercase letters, "
                "digits and '-', starting with a letter or digit"
            )
        for key, port in (("MODELSHIP_PORT", self.port), ("MODELSHIP_REGISTRY_PORT", self.registry_port),
                          ("MODELSHIP_AZURITE_PORT", self.azurite_port)):
            if not 1024 <= port <= 65535:
                raise ValueError(f"{key} must be a port in 1024-65535, got {port}")
        if len({self.port, self.registry_port, self.azurite_port}) != 3:
            raise ValueError("MODELSHIP_PORT, MODELSHIP_REGISTRY_PORT and MODELSHIP_AZURITE_PORT must differ")
        if self.memory and not _MEMORY_RE.match(self.memory):
            raise ValueError(
                f"MODELSHIP_MEMORY {self.memory!r} is not allowed: use a number with k, m or g (512m)"
            )
        if not _CPUS_RE.match(self.cpus):
            raise ValueError(
                f"MODELSHIP_CPUS {self.cpus!r} is not allowed: use a positive number like 1 or 0.5"
            )
        parse_model_ref(self.model_ref)
        if self.release_alias is not None and not is_alias_name(self.release_alias):
            raise ValueError(f"--from-alias {self.release_alias!r} is not an alias name "
                             "(for example production)")
        if not re.match(r"^[a-z0-9]+([._/-][a-z0-9]+)*$", self.repository):
            raise ValueError(f"MODELSHIP_REPOSITORY {self.repository!r} is not a repository name")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LocalSettings:
        env = os.environ if env is None else env
        memory, cpus = deployment_limits()

        def port(key: str, default: int) -> int:
            raw = env.get(key, str(default))
            try:
                return int(raw)
            except ValueError:
                raise ValueError(f"{key} must be a port number, got {raw!r}") from None

        return cls(
            state_dir=Path(env.get("MODELSHIP_STATE_DIR", ROOT / ".local")).resolve(),
            context=Path(env.get("MODELSHIP_CONTEXT", ROOT / "app")).resolve(),
            instance=env.get("MODELSHIP_INSTANCE", "modelship"),
            port=port("MODELSHIP_PORT", image_contract.PORT),
            registry_port=port("MODELSHIP_REGISTRY_PORT", 5000),
            azurite_port=port("MODELSHIP_AZURITE_PORT", 10000),
            **dict(zip(("model", "model_version"), parse_model_ref(env.get("MODELSHIP_MODEL", "digits")),
                       strict=True)),
            store_container=env.get("MODELSHIP_STORE_CONTAINER", "models"),
            repository=env.get("MODELSHIP_REPOSITORY", "modelship/digits"),
            base_image=env.get("MODELSHIP_BASE_IMAGE", ""),
            memory=env.get("MODELSHIP_MEMORY", memory),
            cpus=env.get("MODELSHIP_CPUS", cpus),
            startup_seconds=startup_seconds(env),
            keep=hygiene.keep_from_env(env),
        )

    def sized_for(self, manifest) -> LocalSettings:
        """These settings with the memory limit and start-up budget ``manifest``'s model needs.

        A configured limit below that is refused here, before anything is built.
        """
        try:
            sized = budget.resolve(manifest, self.memory, self.startup_seconds)
        except sizing.SizingError as exc:
            raise DeliveryError(f"{exc}. Nothing was built.") from None
        return dataclasses.replace(self, memory=sized.docker_memory if not self.memory else self.memory,
                                   startup_seconds=sized.startup_seconds)

    @property
    def ready_timeout(self) -> float:
        """Seconds a container may take to answer ready: the start-up budget, else the base one."""
        return float(self.startup_seconds or sizing.STARTUP_BASE_S)

    @property
    def memory_limit(self) -> str:
        """The container's memory limit: as configured or sized (:meth:`sized_for`); before a model
        is known, the smallest derived limit."""
        return self.memory or sizing.for_model(1).docker_memory

    @property
    def model_ref(self) -> str:
        """``NAME@VERSION`` or ``NAME@latest``: what ``up`` fetches from the store."""
        return f"{self.model}@{self.model_version}"

    @property
    def alias(self) -> str | None:
        """The alias a canary rollback moves back: :attr:`release_alias`, else the alias ``MODEL`` names."""
        if self.release_alias:
            return self.release_alias
        return self.model_version if is_alias_name(self.model_version) else None

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def azurite_dir(self) -> Path:
        return self.state_dir / "azurite-data"

    @property
    def container(self) -> str:
        """Name of the live container."""
        return f"{self.instance}-{self.model}"

    @property
    def frontdoor_dir(self) -> Path:
        return self.state_dir / f"frontdoor-{self.instance}"

    @property
    def label(self) -> str:
        return f"modelship.instance={self.instance}"

    @property
    def record_file(self) -> Path:
        return self.state_dir / f"deployment-{self.instance}.json"

    @property
    def run_options(self) -> engine.RunOptions:
        return engine.RunOptions(memory=self.memory_limit, cpus=self.cpus,
                                 health_start_period=self.startup_seconds)

