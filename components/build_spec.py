"""How the model image is built: one description shared by the stack's ModelImage and local delivery.

The image is built from ``app/`` (the build context, with ``app/Dockerfile``) and the model
directory, which must sit inside the context at ``app/model/`` so that every builder (BuildKit via
pulumi-docker-build in the cloud, the local Docker Engine here) sees the same files and produces
the same layers. Nothing here talks to Docker or Pulumi: it computes paths, build arguments,
labels and tags from the model manifest and the source revision, and stages the shared contract.

The image needs :mod:`modelship_contract` (the server imports it), but the package lives once, at the
top of the repository, outside ``app/``, and a Docker build sees only its context.
:func:`make_build_spec` therefore copies it into ``<context>/modelship_contract/`` (ignored by git,
like ``model/``): the one file write here, done only when the copy differs from the package.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import modelship_contract
from modelship_contract.manifest import ModelManifest, read_manifest

DEFAULT_BASE_IMAGE = "python:3.11-slim"
"""The official slim Python image; where pulls are impossible a locally built base is passed instead."""
MODEL_SUBDIR = "model"
"""Where the model directory sits inside the build context."""
CONTRACT_SUBDIR = "modelship_contract"
"""Where the contract package's copy sits inside the build context (the Dockerfile copies it)."""
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
"""A source revision (a git sha or a CI build id), as it goes into image tags."""


class BuildSpecError(ValueError):
    """The inputs to an image build are unusable; the message names which and why."""


@dataclasses.dataclass(frozen=True)
class BuildSpec:
    """Everything a builder needs to produce the model image."""

    context: Path
    """Build context directory (``app/``)."""
    dockerfile: Path
    """The Dockerfile inside the context."""
    model_dir: Path
    """Model directory inside the context."""
    manifest: ModelManifest
    """Manifest of the model baked into the image."""
    revision: str
    """Source revision (short git sha) of the app code."""
    base_image: str
    """Base image passed as the ``BASE_IMAGE`` build argument."""

    @property
    def tag(self) -> str:
        """``<revision>-<model name>-<model version>``: both the code and the model are in the tag."""
        tag = f"{self.revision}-{self.manifest.name}-{self.manifest.version}"
        if not _TAG_RE.match(tag):
            raise BuildSpecError(f"image tag {tag!r} is not a valid Docker tag")
        return tag

    @property
    def build_args(self) -> dict[str, str]:
        """Non-secret build arguments; the Dockerfile turns them into OCI labels."""
        return {
            "BASE_IMAGE": self.base_image,
            "REVISION": self.revision,
            "MODEL_NAME": self.manifest.name,
            "MODEL_VERSION": self.manifest.version,
            "MODEL_SHA256": self.manifest.sha256,
        }

    def tags_for(self, repository: str) -> list[str]:
        """Full references for ``repository`` (``registry/name``)."""
        return [f"{repository}:{self.tag}"]


def stage_contract(context: Path | str) -> Path:
    """Make ``<context>/modelship_contract/`` a copy of the installed contract package; return it.

    Left alone when it already holds the same files. Otherwise the new copy is written beside it and
    swapped in with renames, so a concurrent build never sees a half-written package.
    """
    context = Path(context)
    source = Path(modelship_contract.__file__).resolve().parent
    files = {p.name: p.read_bytes() for p in sorted(source.glob("*.py"))}
    target = context / CONTRACT_SUBDIR
    if target.is_dir() and {p.name: p.read_bytes() for p in target.glob("*.py")} == files \
            and not [p for p in target.iterdir() if p.suffix != ".py" and p.name != "__pycache__"]:
        return target
    fresh = Path(tempfile.mkdtemp(prefix=".contract-", dir=context))
    try:
        for name, data in files.items():
            (fresh / name).write_bytes(data)
        fresh.chmod(0o755)
        old = context / f".contract-old-{uuid.uuid4().hex[:8]}"
        if target.exists() or target.is_symlink():
            os.replace(target, old)
        os.replace(fresh, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return target


def make_build_spec(
    context: Path | str,
    revision: str,
    base_image: str = DEFAULT_BASE_IMAGE,
    model_dir: Path | str | None = None,
) -> BuildSpec:
    """Describe the build of ``context`` with the model found in ``context/model`` (or ``model_dir``).

    ``model_dir`` must lie inside ``context``: the Dockerfile copies it from there. Only the
    manifest is read here (cheap and deterministic); the server re-checks the sha256 at start.
    Pure: nothing is written. A caller that builds stages the contract package into the context
    first (:func:`stage_contract`).
    """
    context = Path(context).resolve()
    dockerfile = context / "Dockerfile"
    if not dockerfile.is_file():
        raise BuildSpecError(f"build context {context} has no Dockerfile")
    model = (Path(model_dir) if model_dir is not None else context / MODEL_SUBDIR).resolve()
    if model != context / MODEL_SUBDIR:
        raise BuildSpecError(
            f"model directory {model} must be {context / MODEL_SUBDIR}: the Dockerfile copies "
            f"the model from '{MODEL_SUBDIR}/' inside the build context"
        )
    if not REVISION_RE.match(revision):
        raise BuildSpecError(
            f"revision {revision!r} is not allowed: use 1-40 letters, digits, '.', '_' or '-'"
        )
    if not base_image or any(c.isspace() for c in base_image):
        raise BuildSpecError(f"base image {base_image!r} is not an image reference")
    return BuildSpec(
        context=context,
        dockerfile=dockerfile,
        model_dir=model,
        manifest=read_manifest(model),
        revision=revision,
        base_image=base_image,
    )
