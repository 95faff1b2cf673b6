"""Local delivery: the seed's build flow end to end on this machine, with real parts.

``python -m delivery.local up`` (``make up``) runs the same steps as the cloud flow, with Azurite
standing in for Blob Storage, a loopback ``docker-registry`` for ACR and the local Docker Engine for
both BuildKit and the Kubernetes Deployment:

1. start what is not running (registry, front door, Azurite); dockerd is the bootstrap's job;
2. publish the demo model to the model store if the store has none;
3. fetch the latest model into the build context (``app/model``) through the model store's cache;
4. build with the stack's build spec (same Dockerfile, context, build args and tag as ModelImage);
5. test the built image before pushing it: run it with the Deployment's settings on a free port
   and smoke-test it (ready, one known answer, the reported model version);
6. push to the registry and run the image by digest next to the previous container, on its own
   ephemeral loopback port; once it passes the same smoke test, the front door on
   127.0.0.1:<port> (the LoadBalancer's stand-in, :mod:`delivery.frontdoor`) sends new
   connections to it and the previous container is stopped: no moment without an answer.

``down`` stops everything ``up`` started. Every step that fails raises :class:`DeliveryError`
whose message says what failed; nothing before the switch touches the running container.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from components import sizing
from components.build_spec import BuildSpec, make_build_spec
from delivery import budget, canary, engine, hygiene
from delivery.frontdoor import FrontDoor
from delivery.prometheus import LocalPrometheus
from delivery.services import LocalRegistry, ServiceError, stop_pid
from modelserver.manifest import git_revision

ROOT = Path(__file__).resolve().parent.parent
DEMO_VERSION = "1.0.0"
STOP_TIMEOUT = 30
"""Seconds ``docker stop`` waits before SIGKILL; above the server's 20 s graceful timeout."""
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
_MEMORY_RE = re.compile(r"^[1-9][0-9]*[kmg]$")
_CPUS_RE = re.compile(r"^(0\.[0-9]*[1-9][0-9]*|[1-9][0-9]*(\.[0-9]+)?)$")


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
    from delivery.plan import load_stack_settings

    stack = load_stack_settings("dev")
    memory = k8s_memory_to_docker(stack.memory_limit) if stack.memory_limit else ""
    return memory, k8s_cpu_to_docker(stack.cpu_limit)


def startup_seconds(env: Mapping[str, str]) -> int | None:
    raw = env.get("MODELSHIP_STARTUP_SECONDS", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 10 <= int(raw) <= 3600:
        raise ValueError(f"MODELSHIP_STARTUP_SECONDS must be whole seconds in 10-3600, got {raw!r}")
    return int(raw)


class DeliveryError(RuntimeError):
    """A step of the local delivery failed; the message names the step and the cause."""


def log(msg: str) -> None:
    print(f"[local] {msg}", flush=True)


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
    port: int = 8080
    """Host port of the running service on 127.0.0.1 (``MODELSHIP_PORT``)."""
    registry_port: int = 5000
    """Port of the local registry on 127.0.0.1 (``MODELSHIP_REGISTRY_PORT``)."""
    azurite_port: int = 10000
    """Blob port of Azurite on 127.0.0.1 (``MODELSHIP_AZURITE_PORT``)."""
    model: str = "digits"
    """Model name in the store (``MODELSHIP_MODEL``: ``NAME`` or ``NAME@VERSION``)."""
    model_version: str = "latest"
    """Version to deploy: ``latest`` follows the store's pointer; a version pins it (a rollback is
    ``make up MODEL=digits@1.0.0``)."""
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
            port=port("MODELSHIP_PORT", 8080),
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
    def memory_limit(self) -> str:
        """The container's memory limit: as configured or sized (:meth:`sized_for`); before a model
        is known, the smallest derived limit."""
        return self.memory or sizing.for_model(1).docker_memory

    @property
    def model_ref(self) -> str:
        """``NAME@VERSION`` or ``NAME@latest``: what ``up`` fetches from the store."""
        return f"{self.model}@{self.model_version}"

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
        from components import service

        return engine.RunOptions(
            memory=self.memory_limit, cpus=self.cpus, user=f"{service.APP_UID}:{service.APP_UID}",
            container_port=service.APP_PORT, env={"MODELSHIP_MODEL_DIR": service.MODEL_MOUNT},
            health_start_period=self.startup_seconds,
        )


# --- source revision ---------------------------------------------------------------------------

def context_digest(context: Path) -> str:
    """sha256 over the build context's code (paths and bytes), leaving out the model and caches."""
    digest = hashlib.sha256()
    for path in sorted(context.rglob("*")):
        rel = path.relative_to(context)
        if (not path.is_file() or rel.parts[0] == "model" or "__pycache__" in rel.parts
                or path.suffix == ".pyc"):
            continue
        digest.update(str(rel).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def source_revision(context: Path) -> str:
    """The git short sha when the context is committed as is, else ``dev-<hash of the code>``.

    A code change that is not committed yet still gets its own tag, so a rebuilt image never
    silently takes over the tag of a different build.
    """
    return git_revision(context, clean=True) or f"dev-{context_digest(context)[:12]}"


# --- steps -------------------------------------------------------------------------------------

def ensure_registry(settings: LocalSettings) -> LocalRegistry:
    registry = LocalRegistry(settings.state_dir, settings.registry_port)
    try:
        registry.ensure()
    except ServiceError as exc:
        raise DeliveryError(f"registry: {exc}") from exc
    return registry


def ensure_azurite(settings: LocalSettings) -> str:
    """Start Azurite unless it runs; return its connection string (never printed: it holds the key)."""
    from delivery import azurite as emulator

    try:
        pid = emulator.daemon_start(settings.azurite_port, settings.azurite_dir)
    except emulator.EmulatorError as exc:
        raise DeliveryError(f"Azurite on 127.0.0.1:{settings.azurite_port}: {exc}") from exc
    log(f"Azurite at {emulator.blob_endpoint(settings.azurite_port)} (pid {pid})")
    return emulator.connection_string(settings.azurite_port)


def ensure_demo_model(store, name: str) -> None:
    """Train and publish the demo model if the store has no version of ``name``."""
    from modelstore.errors import ModelStoreError, NotFound

    try:
        latest = store.latest(name)
        log(f"model store has {name}; latest is {latest.version}")
        return
    except NotFound:
        pass
    except ModelStoreError as exc:
        raise DeliveryError(f"cannot read the model store: {exc}") from exc
    from training.train_digits import train

    log(f"model store has no {name}: training and publishing the demo model {name}@{DEMO_VERSION}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / name
        train(out, name, DEMO_VERSION)
        try:
            store.publish(out)
        except ModelStoreError as exc:
            raise DeliveryError(f"cannot publish the demo model {name}@{DEMO_VERSION}: {exc}") from exc


def fetch_model(store, ref: str, context: Path, cache_dir: Path):
    """Fetch ``NAME@VERSION`` (or ``NAME@latest``) into ``<context>/model``; the store leaves it
    untouched on failure."""
    from modelstore.errors import ModelStoreError

    name, version = ref.split("@", 1) if "@" in ref else (ref, "latest")
    what = f"the latest {name}" if version == "latest" else ref
    try:
        result = store.fetch(ref, context / "model", cache_dir=cache_dir)
    except ModelStoreError as exc:
        raise DeliveryError(
            f"cannot fetch {what} from the model store: {exc}. "
            "Nothing was built or pushed; the running container (if any) keeps serving. "
            f"To deploy another version: make up MODEL={name}@<version> "
            f"(published: {_published_versions(store, name)})"
        ) from exc
    m = result.manifest
    log(f"fetched {m.name}@{m.version} ({result.bytes_transferred} bytes transferred, "
        f"cache {'hit' if result.cache_hit else 'miss'}, signed by {result.signer})")
    return result


def _published_versions(store, name: str) -> str:
    """The store's versions of ``name``, newest last, for an error message (best effort)."""
    try:
        versions = [v.version for v in store.versions(name)]
    except Exception:  # the message it decorates is the error; this is only a hint
        return "unknown"
    return ", ".join(versions[-5:]) or "none"


def prepare_trust(context: Path) -> None:
    """Put the trusted public keys into ``<context>/trust``: the build verifies the model against them.

    With no key configured (``MODELSHIP_SIGNING_KEY`` unset) the local key is created on first use,
    outside the repository (:mod:`modelstore.signing`); only public keys enter the context.
    """
    from modelstore import signing
    from modelstore.errors import ModelStoreError

    try:
        if not os.environ.get(signing.SIGNING_KEY_ENV):
            signing.ensure_key()
        signing.export_trusted_keys(context / "trust")
    except ModelStoreError as exc:
        raise DeliveryError(f"model signing keys: {exc}") from exc


def missing_wheels(context: Path) -> list[str]:
    """Pinned requirements of the image that have no wheel in ``<context>/wheels``."""
    wheels = {w.name.lower() for w in (context / "wheels").glob("*.whl")}
    missing = []
    for line in (context / "requirements.txt").read_text().splitlines():
        req = line.split("#", 1)[0].strip()
        if not req:
            continue
        name, _, version = req.partition("==")
        prefix = f"{re.sub(r'[-_.]+', '_', name.strip()).lower()}-{version.strip().lower()}-"
        if not any(w.startswith(prefix) for w in wheels):
            missing.append(req)
    return missing


def ensure_wheelhouse(context: Path) -> None:
    """Fill ``app/wheels`` from the host's package index when wheels are missing.

    The image build installs from there with ``--no-index``: builds then need no network (and no
    trust of the host's TLS setup inside the build container).
    """
    missing = missing_wheels(context)
    if not missing:
        return
    log(f"wheelhouse lacks {len(missing)} pinned packages; running scripts/build-wheelhouse.sh")
    env = {**os.environ, "PIP": f"{sys.executable} -m pip"}
    # The script fills the checkout's app/wheels; a context elsewhere (tests) gets a copy.
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "build-wheelhouse.sh")], check=False, env=env)
    if proc.returncode != 0:
        raise DeliveryError(f"scripts/build-wheelhouse.sh failed ({proc.returncode}); its output is above")
    if context != ROOT / "app":
        shutil.copytree(ROOT / "app" / "wheels", context / "wheels", dirs_exist_ok=True)
    still = missing_wheels(context)
    if still:
        raise DeliveryError(
            f"no wheels for {', '.join(still)} in {context / 'wheels'} after build-wheelhouse.sh"
        )


def choose_base_image(settings: LocalSettings) -> str:
    """``MODELSHIP_BASE_IMAGE`` if set, else the debootstrap base, built once and reused."""
    if settings.base_image:
        return settings.base_image
    from delivery.baseimage import BaseImageError, ensure_base_image

    settings.log_dir.mkdir(parents=True, exist_ok=True)
    try:
        return ensure_base_image(log_file=settings.log_dir / "base-image.log", log=log)
    except BaseImageError as exc:
        raise DeliveryError(str(exc)) from exc


def build_image(settings: LocalSettings, base_image: str, registry: LocalRegistry,
                echo: bool = True) -> tuple[BuildSpec, str, str]:
    """Build through the stack's build spec; return (spec, image id, tagged reference)."""
    revision = source_revision(settings.context)
    spec = make_build_spec(settings.context, revision=revision, base_image=base_image)
    repo = f"{registry.host}/{settings.repository}"
    ref = spec.tags_for(repo)[0]
    log(f"building {ref} from {spec.context} (model {spec.manifest.ref}, base {base_image})")
    started = time.monotonic()
    try:
        settings.log_dir.mkdir(parents=True, exist_ok=True)
        build_log = settings.log_dir / "build.log"
        build_log.write_text("")  # the last build's full output (`make up VERBOSE=1` prints it live)
        iid = engine.build(spec.context, spec.dockerfile, spec.build_args, [ref], echo=echo,
                           log_file=build_log)
    except engine.DockerError as exc:
        # The Dockerfile verifies the model's signature (app/modelserver/signature.py, exit 8).
        refusal = re.search(r"refusing the model: (model signature check failed [^\n]*)", str(exc))
        if refusal:
            raise DeliveryError(
                f"image build refused the model: {refusal.group(1)}. Nothing was pushed; the running "
                "container (if any) keeps serving."
            ) from exc
        raise DeliveryError(f"image build failed (full log: {build_log}): {exc}") from exc
    log(f"built {iid[:19]} in {time.monotonic() - started:.1f} s (log: {build_log})")
    return spec, iid, ref


def wait_and_smoke(url: str, model: str, version: str, timeout: float = 90.0, gone=None) -> None:
    from delivery.smoke import run_smoke

    result = run_smoke(url, model=model, expect_version=version, timeout=timeout, interval=0.5,
                       log=lambda line: log(f"smoke: {line}"), gone=gone)
    log(f"smoke passed on {url}: ready after {result.ready_after_s:.1f} s, label {result.label}, "
        f"{model}@{result.version}")


def _wait_s(settings: LocalSettings) -> float:
    return float(settings.startup_seconds or sizing.STARTUP_BASE_S)


def test_image(settings: LocalSettings, image: str, spec: BuildSpec) -> None:
    """Run the built image with the Deployment's settings on a free port and smoke-test it."""
    from delivery import imagetest  # the same container test the cloud runs by digest (ImageTest)

    name = f"{settings.instance}-candidate"
    labels = {"modelship.instance": settings.instance, "modelship.role": "candidate"}
    log(f"testing the image before pushing: {name}")
    try:
        verified = imagetest.run(image, spec.manifest.name, spec.manifest.version, settings.run_options,
                                 _wait_s(settings), name=name, labels=labels,
                                 gone=budget.stopped(name, spec.manifest, settings.memory_limit),
                                 log=lambda line: log(f"smoke: {line}"))
    except (imagetest.ImageTestError, engine.DockerError) as exc:
        raise DeliveryError(f"the built image failed its test, so it was not pushed: {exc}") from exc
    log(f"image passed: ready, known answer, model version {spec.manifest.version}, "
        f"signed by {verified.signer}")


def read_record(settings: LocalSettings) -> dict | None:
    try:
        return json.loads(settings.record_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def live_image_id(settings: LocalSettings) -> str | None:
    state = engine.container_state(settings.container)
    if not state or not state["State"].get("Running"):
        return None
    return state["Image"]


def frontdoor(settings: LocalSettings) -> FrontDoor:
    return FrontDoor(settings.frontdoor_dir, settings.port)


def ensure_frontdoor(settings: LocalSettings) -> FrontDoor:
    door = frontdoor(settings)
    try:
        door.ensure()
    except ServiceError as exc:
        raise DeliveryError(f"front door: {exc}") from exc
    return door


def retire(name: str) -> None:
    """Stop a container that no longer gets new connections (SIGTERM: in-flight requests finish)."""
    engine.docker("stop", "-t", str(STOP_TIMEOUT), name, check=False, timeout=STOP_TIMEOUT + 30)
    engine.remove_container(name)


def repair(settings: LocalSettings, door: FrontDoor) -> None:
    """Bring an interrupted release (or a restarted engine) back to one live container behind the door.

    The container the front door points at is the one that serves: it keeps (or takes) the live
    name and the others are retired. Without a usable backend record the live container (or, from
    an older interrupted swap, the previous one) is started if needed and the door pointed at it.
    """
    live, previous, nxt = settings.container, f"{settings.container}-previous", f"{settings.container}-next"
    states = {name: engine.container_state(name) for name in (live, previous, nxt)}
    backend = door.backend()
    wanted = (backend or {}).get("container_id")
    serving = next((name for name, st in states.items()
                    if st and wanted and st["Id"] == wanted and st["State"].get("Running")), None)
    if serving is None:
        serving = live if states[live] else previous if states[previous] else None
        if serving is None:  # nothing deployed yet (a -next left by an interrupted first release)
            engine.remove_container(nxt)
            return
        if not states[serving]["State"].get("Running"):
            engine.docker("start", serving)
            log(f"started {serving}, left stopped by an interrupted release")
    for name, st in states.items():
        if st is not None and name != serving:
            retire(name)
            log(f"retired {name}, left behind by an interrupted release")
    if serving != live:
        engine.docker("rename", serving, live)
    port = engine.published_port(live, settings.run_options.container_port)
    live_id = engine.container_state(live)["Id"]
    if port == settings.port:
        raise DeliveryError(
            f"{live} publishes 127.0.0.1:{settings.port} itself (started by an older `make up`); "
            "run `make down` once, then `make up`"
        )
    if backend != {"port": port, "container_id": live_id}:
        door.switch(port, live_id)
        log(f"front door now forwards to {live} on 127.0.0.1:{port}")


def deploy(settings: LocalSettings, pinned: str, spec: BuildSpec) -> None:
    """Run ``pinned`` (``repo@sha256:...``) behind the front door without a moment of downtime.

    Like a rolling update with ``maxUnavailable: 0``: the new container starts next to the old
    one, on its own ephemeral loopback port, and is smoke-tested there. Only once HAProxy's health
    check passes too does the front door send requests to it, and drain the old one (no new
    requests; those in flight finish); the old container is stopped after that. On any failure
    before the switch the new container is removed and the old one, which never stopped, keeps
    serving.
    """
    door = frontdoor(settings)
    repair(settings, door)
    live, previous, nxt = settings.container, f"{settings.container}-previous", f"{settings.container}-next"
    labels = {"modelship.instance": settings.instance, "modelship.role": "live"}
    try:
        engine.create_container(pinned, nxt, 0, settings.run_options, labels)
    except engine.DockerError as exc:
        engine.remove_container(nxt)
        raise DeliveryError(
            f"cannot create a container from {pinned}: {exc}. The running container was not touched."
        ) from exc
    url, port = f"container {nxt}", 0
    try:
        engine.docker("start", nxt)
        port = engine.published_port(nxt, settings.run_options.container_port)
        url = f"http://127.0.0.1:{port}"
        wait_and_smoke(url, spec.manifest.name, spec.manifest.version, _wait_s(settings),
                       budget.stopped(nxt, spec.manifest, settings.memory_limit))
        # In the front door with weight 0 until HAProxy's own health check passes: no traffic yet.
        door.add(port, engine.container_state(nxt)["Id"])
        # With a version already serving: canary in steps, analysed in Prometheus (delivery/canary.py).
        canary.release(settings, door, live, nxt, port, spec.manifest.name, spec.manifest.version)
    except BaseException as exc:
        # BaseException too: an interrupt (Ctrl-C) must not leave a half-started container behind.
        logs = engine.logs_tail(nxt)
        if port:
            with contextlib.suppress(ServiceError):
                door.remove(port, timeout=5)
        engine.remove_container(nxt)
        if not isinstance(exc, Exception):
            raise
        raise DeliveryError(f"the new container failed on {url}: {exc}. The running container was "
                            f"not touched.\ncontainer log:\n{logs}") from exc
    door.switch(port, engine.container_state(nxt)["Id"])
    # From here on the new container serves; an interruption is finished by repair() next time.
    had_old = engine.container_state(live) is not None
    if had_old:
        # switch() drained it: no request is in progress there, and none will come.
        engine.docker("rename", live, previous)
    engine.docker("rename", nxt, live)
    log(f"front door {door.endpoint} now sends every request to {live} (127.0.0.1:{port})")
    if had_old:
        started = time.monotonic()
        retire(previous)
        log(f"stopped the previous container after {time.monotonic() - started:.1f} s (drained)")


def up(settings: LocalSettings, echo: bool = True, store=None) -> dict:
    """Run the whole flow under a lock on the state directory (one ``up`` at a time per deployment)."""
    import fcntl

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.state_dir / f"up-{settings.instance}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DeliveryError(
                f"another `up` of {settings.instance} is running (lock {lock.name}); wait for it"
            ) from None
        return _up(settings, echo, store)


def _up(settings: LocalSettings, echo: bool, store) -> dict:
    """Run the whole flow; return the deployment record (also written to the state dir).

    ``store`` replaces the model store on the local Azurite (tests pass one on their own emulator).
    """
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()

    def step(label: str) -> None:
        # One line per step; the running time tells how long each one took.
        log(f"{label}  (t+{time.monotonic() - began:.1f} s)")

    if not engine.engine_available():
        raise DeliveryError("no Docker Engine answers: run scripts/bootstrap.sh (make up does)")
    step("1/6 services")
    registry = ensure_registry(settings)
    repair(settings, ensure_frontdoor(settings))
    if store is None:
        from modelstore.store import ModelStore

        store = ModelStore.from_connection_string(ensure_azurite(settings), settings.store_container)
    step("2/6 model store")
    prepare_trust(settings.context)
    ensure_demo_model(store, settings.model)
    step(f"3/6 fetch {settings.model_ref}")
    fetched = fetch_model(store, settings.model_ref, settings.context, settings.state_dir / "model-cache")
    settings = settings.sized_for(fetched.manifest)
    log(f"model {fetched.manifest.ref} is {sizing.human(fetched.manifest.size)}: memory limit "
        f"{settings.memory}, start-up budget {settings.startup_seconds} s")
    step("4/6 build")
    ensure_wheelhouse(settings.context)
    base = choose_base_image(settings)
    spec, iid, ref = build_image(settings, base, registry, echo=echo)
    record = read_record(settings)
    if (record and record.get("image_id") == iid and live_image_id(settings) == iid):
        log(f"unchanged: {record['image']} is already running on {record['endpoint']}")
        return record
    step("5/6 test before push")
    test_image(settings, iid, spec)
    step("6/6 push and run by digest")
    repo = f"{registry.host}/{settings.repository}"
    try:
        pushed = time.monotonic()
        digest = engine.push(ref, repo)
    except engine.DockerError as exc:
        raise DeliveryError(f"push to {registry.host} failed: {exc}") from exc
    log(f"pushed {digest[:19]} to {registry.host} in {time.monotonic() - pushed:.1f} s")
    pinned = f"{repo}@{digest}"
    sbom_digest, sbom_components = push_sbom(settings, registry, pinned, digest)
    deploy(settings, pinned, spec)
    record = {
        "image": pinned, "tag": ref, "image_id": iid, "digest": digest,
        "model": spec.manifest.name, "model_version": spec.manifest.version,
        "model_signer": fetched.signer,
        "sbom": f"{repo}@{sbom_digest}", "sbom_components": sbom_components,
        "model_bytes_transferred": fetched.bytes_transferred,
        "memory": settings.memory, "startup_seconds": settings.startup_seconds,
        "revision": spec.revision, "base_image": base, "container": settings.container,
        "endpoint": f"http://127.0.0.1:{settings.port}",
    }
    backend_port = engine.published_port(settings.container, settings.run_options.container_port)
    record["backend"] = f"127.0.0.1:{backend_port}"
    settings.record_file.write_text(json.dumps(record, indent=2) + "\n")
    log(f"running {pinned}")
    took = time.monotonic() - began
    log(f"endpoint: {record['endpoint']}  (model {spec.manifest.ref}, signed by {fetched.signer}; "
        f"SBOM {sbom_digest[:19]}; done in {took:.1f} s)")
    hygiene.prune_images(settings.repository, settings.keep, {iid}, log)
    hygiene.prune_cache(settings.state_dir / "model-cache", settings.keep, log)
    return record


def push_sbom(settings: LocalSettings, registry: LocalRegistry, pinned: str, digest: str) -> tuple[str, int]:
    """CycloneDX SBOM of the pushed image's Python environment, stored beside it, linked to its digest.

    Before the deployment: an image whose SBOM cannot be produced is not run.
    """
    from delivery import sbom

    out = settings.state_dir / "sbom" / f"{digest.replace(':', '-')}.cdx.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        bom = sbom.generate(pinned, out)
        sbom_digest = sbom.push(registry.host, settings.repository, digest, out)
    except sbom.SbomError as exc:
        raise DeliveryError(f"SBOM: {exc}. The running container was not touched.") from exc
    log(f"SBOM ({len(bom.get('components', []))} Python packages, CycloneDX) pushed as {sbom_digest[:19]}, "
        f"linked to {digest[:19]}")
    return sbom_digest, len(bom.get("components", []))


def down(settings: LocalSettings, purge: bool = False, build_cache: bool = False) -> None:
    """Stop everything ``up`` started: containers, front door, registry, Azurite, and dockerd if
    bootstrap started it; empty ``app/model``. ``purge``: also remove the stored data
    (:mod:`delivery.hygiene`)."""
    if engine.engine_available():
        for name in engine.containers_with_label(settings.label):
            engine.remove_container(name)
            log(f"removed container {name}")
    if frontdoor(settings).stop():
        log("stopped the front door")
    if LocalRegistry(settings.state_dir, settings.registry_port).stop():
        log("stopped the registry")
    if LocalPrometheus(settings.state_dir, canary.CanarySettings.from_env().prometheus_port).stop():
        log("stopped Prometheus")
    from delivery import azurite as emulator

    pid = emulator.daemon_stop(settings.azurite_dir)
    if pid:
        log(f"stopped Azurite (pid {pid})")
    settings.record_file.unlink(missing_ok=True)
    hygiene.clear_model_dir(settings.context, log)
    if purge:
        hygiene.purge(settings.state_dir, settings.azurite_dir, settings.repository, build_cache, log)
    if stop_pid(settings.state_dir / "run" / "dockerd.pid", "dockerd", timeout=30):
        log("stopped dockerd (started by bootstrap)")


def publish(settings: LocalSettings, model_dir: Path | None, train_version: str | None) -> None:
    """Publish a model directory (or a freshly trained demo version) to the local model store."""
    from modelstore.errors import ModelStoreError
    from modelstore.store import ModelStore

    store = ModelStore.from_connection_string(ensure_azurite(settings), settings.store_container)
    prepare_trust(settings.context)  # creates the local signing key on first use
    with tempfile.TemporaryDirectory() as tmp:
        if train_version is not None:
            from training.train_digits import train

            model_dir = Path(tmp) / settings.model
            train(model_dir, settings.model, train_version)
        try:
            manifest = store.publish(model_dir)
        except ModelStoreError as exc:
            raise DeliveryError(f"publish to the local model store failed: {exc}") from exc
    log(f"published {manifest.ref} to the local model store; `make up` deploys it")


def status(settings: LocalSettings) -> int:
    """Print the deployment when its container runs and the front door forwards to it."""
    record = read_record(settings)
    live = live_image_id(settings) if engine.engine_available() else None
    door = frontdoor(settings)
    backend = door.backend()
    state = engine.container_state(settings.container) if live else None
    if record and live == record.get("image_id") and door.running_pid() and state and backend \
            and backend.get("container_id") == state["Id"]:
        print(json.dumps({**record, "backend": f"127.0.0.1:{backend['port']}",
                          "frontdoor_pid": door.running_pid()}, indent=2))
        return 0
    print("not running")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m delivery.local", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "publish"])
    parser.add_argument("--verbose", action="store_true",
                        help="up: print the build's full output (always kept in .local/logs/build.log)")
    parser.add_argument("--quiet-build", action="store_true", help=argparse.SUPPRESS)  # the default now
    parser.add_argument("--purge", action="store_true",
                        help="down: also remove images, registry and Azurite data and the model cache")
    parser.add_argument("--build-cache", action="store_true", help="down --purge: prune the build cache too")
    parser.add_argument("--model", metavar="NAME[@VERSION]",
                        help="up: the model version to deploy (default: MODELSHIP_MODEL, else digits@latest)")
    parser.add_argument("--model-dir", type=Path, help="publish: the model directory to publish")
    parser.add_argument("--train", metavar="VERSION", help="publish: train the demo model as VERSION")
    args = parser.parse_args(argv)
    try:
        env = dict(os.environ)
        if args.model:
            env["MODELSHIP_MODEL"] = args.model
        settings = LocalSettings.from_env(env)
        canary.CanarySettings.from_env(env)  # a bad canary setting fails before anything starts
        if args.command == "up":
            up(settings, echo=args.verbose and not args.quiet_build)
        elif args.command == "down":
            down(settings, purge=args.purge, build_cache=args.build_cache)
        elif args.command == "publish":
            if (args.model_dir is None) == (args.train is None):
                parser.error("publish needs exactly one of --model-dir DIR or --train VERSION")
            publish(settings, args.model_dir, args.train)
        else:
            return status(settings)
    except (DeliveryError, engine.DockerError, ServiceError, ValueError) as exc:
        print(f"[local] ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
