"""Build and check the image: wheelhouse, base image, the build through the stack's build spec,
the candidate check before the push, the push and the SBOM beside it.

The image tag carries :func:`source_revision`; the build spec (:mod:`components.build_spec`) is the
same one ``ModelImage`` uses in the cloud, so the local image is built as the cloud's would be.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import modelship_contract
from components.build_spec import BuildSpec, make_build_spec, stage_contract
from delivery import budget, engine
from delivery.services import LocalRegistry, ServiceError
from delivery.settings import ROOT, DeliveryError, LocalSettings, log
from modelship_contract.manifest import git_revision

CONTRACT_SOURCE = Path(modelship_contract.__file__).resolve().parent
"""The contract package the build stages into the context: its uncommitted changes are code changes too."""


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


def source_revision(context: Path, contract: Path = CONTRACT_SOURCE) -> str:
    """The git short sha when the context and the contract package are committed as they are, else
    ``dev-<hash of the code>`` (the context's digest covers the contract's staged copy).

    A code change that is not committed yet still gets its own tag, so a rebuilt image never
    silently takes over the tag of a different build.
    """
    revision = git_revision(context, clean=True)
    if revision and git_revision(contract, clean=True) == revision:
        return revision
    return f"dev-{context_digest(context)[:12]}"



def ensure_registry(settings: LocalSettings) -> LocalRegistry:
    registry = LocalRegistry(settings.state_dir, settings.registry_port)
    try:
        registry.ensure()
    except ServiceError as exc:
        raise DeliveryError(f"registry: {exc}") from exc
    return registry



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
    stage_contract(settings.context)  # before the revision: the contract's copy is part of the code
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
        # The Dockerfile verifies the model's signature (modelship_contract/signature.py, exit 8).
        refusal = re.search(r"refusing the model: (model signature check failed [^\n]*)", str(exc))
        if refusal:
            raise DeliveryError(
                f"image build refused the model: {refusal.group(1)}. Nothing was pushed; the running "
                "container (if any) keeps serving."
            ) from exc
        raise DeliveryError(f"image build failed (full log: {build_log}): {exc}") from exc
    log(f"built {iid[:19]} in {time.monotonic() - started:.1f} s (log: {build_log})")
    return spec, iid, ref


def check_candidate(settings: LocalSettings, image: str, spec: BuildSpec) -> None:
    """Run the built image with the Deployment's settings on a free port and smoke-test it;
    an image that fails is not pushed."""
    from delivery import imagetest  # the same container test the cloud runs by digest (ImageTest)

    name = f"{settings.instance}-candidate"
    labels = {"modelship.instance": settings.instance, "modelship.role": "candidate"}
    log(f"testing the image before pushing: {name}")
    try:
        verified = imagetest.run(image, spec.manifest.name, spec.manifest.version, settings.run_options,
                                 settings.ready_timeout, name=name, labels=labels,
                                 gone=budget.stopped(name, spec.manifest, settings.memory_limit),
                                 log=lambda line: log(f"smoke: {line}"))
    except (imagetest.ImageTestError, engine.DockerError) as exc:
        raise DeliveryError(f"the built image failed its test, so it was not pushed: {exc}") from exc
    log(f"image passed: ready, known answer, model version {spec.manifest.version}, "
        f"signed by {verified.signer}")


def push_image(registry: LocalRegistry, repository: str, ref: str) -> str:
    """Push the tested image ``ref`` to ``<registry>/<repository>``; return its digest."""
    try:
        pushed = time.monotonic()
        digest = engine.push(ref, f"{registry.host}/{repository}")
    except engine.DockerError as exc:
        raise DeliveryError(f"push to {registry.host} failed: {exc}") from exc
    log(f"pushed {digest[:19]} to {registry.host} in {time.monotonic() - pushed:.1f} s")
    return digest


def push_sbom(settings: LocalSettings, registry: LocalRegistry, pinned: str, digest: str,
              base: str) -> tuple[str, int]:
    """CycloneDX SBOM of the pushed image (Python environment and Debian packages), stored beside it,
    linked to its digest; returns (its digest, how many components it lists).

    Before the deployment: an image whose SBOM cannot be produced is not run. An image built from
    the same environment inputs as one already described (a code-only or model-only release:
    :func:`delivery.sbom.environment_key`) reuses that SBOM instead of copying ``/opt/venv`` and the
    dpkg database out and running ``cyclonedx-py`` and cdxgen again (measured: 28 s of a 51 s
    code-only release on a loaded VM).
    """
    from delivery import sbom

    out = settings.state_dir / "sbom" / f"{digest.replace(':', '-')}.cdx.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cached = out.parent / f"env-{sbom.environment_key(settings.context, engine.image_id(base))}.cdx.json"
    try:
        if cached.is_file():
            bom, how = sbom.reuse(cached, pinned, out), "same environment as before: reused"
        else:
            bom, how = sbom.generate(pinned, out), "generated"
            shutil.copyfile(out, cached)
        sbom_digest = sbom.push(registry.host, settings.repository, digest, out)
    except sbom.SbomError as exc:
        raise DeliveryError(f"SBOM: {exc}. The running container was not touched.") from exc
    parts = sbom.part_counts(bom)
    log(f"SBOM ({parts.get('python', 0)} Python and {parts.get('os', 0)} Debian packages, CycloneDX; {how}) "
        f"pushed as {sbom_digest[:19]}, linked to {digest[:19]}")
    return sbom_digest, len(bom.get("components", []))
