"""Promotion: a stack that never builds deploys the image another stack verified, by digest.

The dev stack exports ``release``: the image its container test verified (``ImageTest``), pinned
by digest, with the model it serves. A stack with ``promoteFrom`` set (``Pulumi.prod.yaml``)
declares no image build and no test; it:

1. takes the ``release`` the pipeline passes (config ``release``: dev's output of this run,
   ``scripts/cloud-deploy.sh deploy-prod``): the model's name, version and size size the pods
   before any resource is registered;
2. imports that digest into its own registry (``ImportedImage``: ``az acr import`` by digest in a
   ``pulumi-command`` resource; azure-native has no import resource). An import copies the
   manifest and blobs as they are, so the digest in the prod registry is the digest dev tested;
3. checks, through a StackReference to ``promoteFrom``, that dev's current ``release`` names the
   same digest (:func:`same_release`); the workload's image is the result of that check, so a
   digest dev did not verify never reaches a Deployment, whatever the config says.

One exception, the rollback: a release equal to this stack's own ``previousRelease`` output (what
it ran before its last promotion, verified by dev then) is deployed too, read through a
StackReference to this very stack (pulumi/pulumi#3722: a stack may read its own last outputs).
``scripts/cloud-deploy.sh deploy-prod`` uses it when prod's smoke test fails after a promotion
(:func:`release_kind`, :func:`previous_release`).

Standard library and Pulumi only: settings validate ``release`` with :meth:`Release.from_json`.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi_command import local

from modelship_contract.image import DIGEST_RE, DIGEST_REF_RE
from modelship_contract.manifest import NAME_RE, VERSION_RE

IMPORT = 'az acr import --name "$REGISTRY" --source "$SOURCE" --image "$TARGET" --force --output none'
"""Copy by digest into this stack's registry (the values come from the command's environment)."""
IMPORT_SBOM = ('az acr import --name "$REGISTRY" --source "$SBOM_SOURCE" --image "$SBOM_TARGET" --force '
               '--output none')
"""Then the image's SBOM artifact, by its digest: ``az acr import`` copies an image without its
referrers, so the SBOM is imported by name; its manifest names the image digest as ``subject``."""
FIELDS = ("image", "digest", "model", "modelVersion", "modelSize")
"""The keys of a release (the dev stack's ``release`` output)."""
OPTIONAL = ("modelSigner", "sbomDigest")
"""Keys a release may also carry (a release recorded before they existed lacks them)."""


@dataclass(frozen=True)
class Release:
    """The image one stack verified and another may deploy."""

    image: str
    """``registry/repository:tag@sha256:...`` as the verifying stack runs it."""
    digest: str
    """``sha256:<64 hex>``: the bytes that passed the container test."""
    model: str
    model_version: str
    model_size: int
    """Model file size in bytes: the pods' memory and start-up budget follow it."""
    model_signer: str = "unknown"
    """Who signed the model, as the verifying stack's container test saw it."""
    sbom_digest: str = ""
    """The image's SBOM artifact in the verifying stack's registry (``ImageSbom``); empty if none."""

    def __post_init__(self) -> None:
        match = self._ref
        if not match:
            raise ValueError(f"image {self.image!r} is not pinned by digest (registry/repository[:tag]"
                             "@sha256:<64 hex>); prod deploys digests, never tags")
        if match.group("digest") != self.digest:
            raise ValueError(f"image {self.image!r} does not carry digest {self.digest!r}")
        if not NAME_RE.match(self.model):
            raise ValueError(f"model {self.model!r} is not an RFC 1123 label")
        if not VERSION_RE.match(self.model_version):
            raise ValueError(f"modelVersion {self.model_version!r} is not a model version")
        if isinstance(self.model_size, bool) or not isinstance(self.model_size, int) or self.model_size < 1:
            raise ValueError(f"modelSize {self.model_size!r} is not a size in bytes")
        if self.sbom_digest and not DIGEST_RE.match(self.sbom_digest):
            raise ValueError(f"sbomDigest {self.sbom_digest!r} is not a sha256 digest")

    @functools.cached_property
    def _ref(self) -> re.Match[str] | None:
        return DIGEST_REF_RE.match(self.image)

    @property
    def repository(self) -> str:
        return self._ref.group("repo")  # type: ignore[union-attr]

    @property
    def tag(self) -> str:
        """The source tag, or one made from the digest when the image has none."""
        return self._ref.group("tag") or f"sha256-{self.digest.split(':', 1)[1][:12]}"  # type: ignore[union-attr]

    @property
    def location(self) -> str:
        """``registry/repository``: where the verifying stack keeps the image and its SBOM."""
        return f"{self._ref.group('host')}/{self._ref.group('repo')}"  # type: ignore[union-attr]

    @property
    def source(self) -> str:
        """``registry/repository@sha256:...``: what ``az acr import`` copies (by digest, not tag)."""
        return f"{self.location}@{self.digest}"

    def to_output(self) -> dict[str, Any]:
        """The ``release`` stack output (camelCase), what :meth:`from_json` reads back."""
        return {"image": self.image, "digest": self.digest, "model": self.model,
                "modelVersion": self.model_version, "modelSize": self.model_size,
                "modelSigner": self.model_signer,
                **({"sbomDigest": self.sbom_digest} if self.sbom_digest else {})}

    @classmethod
    def from_mapping(cls, value: Any) -> Release:
        if not isinstance(value, dict):
            raise ValueError(f"a release is a JSON object with {', '.join(FIELDS)}; "
                             f"got {type(value).__name__}")
        missing = [k for k in FIELDS if k not in value]
        extra = sorted(set(value) - set(FIELDS) - set(OPTIONAL))
        if missing or extra:
            raise ValueError(f"a release has exactly the keys {', '.join(FIELDS)}; missing: "
                             f"{', '.join(missing) or 'none'}, unknown: {', '.join(extra) or 'none'}")
        size = value["modelSize"]
        # Numbers cross Pulumi's RPC (a StackReference's outputs) as doubles: 3e8 is 300000000.
        if isinstance(size, float) and size.is_integer():
            size = int(size)
        return cls(image=value["image"], digest=value["digest"], model=value["model"],
                   model_version=value["modelVersion"], model_size=size,
                   model_signer=str(value.get("modelSigner") or "unknown"),
                   sbom_digest=str(value.get("sbomDigest") or ""))

    @classmethod
    def from_json(cls, text: str) -> Release:
        """Parse the dev stack's ``release`` output (``pulumi stack output release --json``)."""
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"not JSON ({exc.msg} at character {exc.pos})") from None
        return cls.from_mapping(value)


PROMOTION = "promotion"
ROLLBACK = "rollback"
RERUN = "rerun"


def _own(value: Any) -> Release | None:
    """This stack's own earlier ``release``/``previousRelease`` output, if it has a usable one."""
    try:
        return Release.from_mapping(dict(value)) if value else None
    except ValueError:
        return None


def release_kind(promoted_from: str, dev: Any, own_release: Any, own_previous: Any,
                 release: Release) -> str:
    """:data:`PROMOTION` if dev verified and runs ``release``; else :data:`RERUN` if this stack
    already runs it (``own_release``: a retried run), :data:`ROLLBACK` if it is the release this
    stack ran before its last promotion (``own_previous``); raise otherwise."""
    verified, current, previous = _own(dev), _own(own_release), _own(own_previous)
    if verified is None or verified.digest != release.digest:
        if current is not None and current.digest == release.digest:
            return RERUN
        if previous is not None and previous.digest == release.digest:
            return ROLLBACK
    same_release(promoted_from, dev, release)
    return PROMOTION


def previous_release(kind: str, own_release: Any, own_previous: Any, release: Release) -> dict | None:
    """The ``previousRelease`` output after deploying ``release``: what a rollback would go back to.

    A promotion remembers the release it replaces (a re-run of the same release keeps the earlier
    one); a rollback leaves nothing further back, so a second rollback cannot return to the release
    that just failed."""
    if kind == ROLLBACK:
        return None
    current = _own(own_release)
    if current is None:
        return None
    if current.digest == release.digest:
        previous = _own(own_previous)
        return previous.to_output() if previous is not None else None
    return current.to_output()


def same_release(promoted_from: str, dev: Any, release: Release) -> None:
    """Raise unless ``dev`` (the verifying stack's current ``release`` output) is ``release``'s digest."""
    if not dev:
        raise ValueError(f"stack {promoted_from} exports no release: no image has passed its container "
                         "test there; deploy it first")
    try:
        verified = Release.from_mapping(dict(dev))
    except ValueError as exc:
        raise ValueError(f"stack {promoted_from}'s release output is unusable: {exc}") from None
    if verified.digest != release.digest:
        raise ValueError(
            f"config 'release' names {release.digest}, but stack {promoted_from} verified and runs "
            f"{verified.digest}: prod deploys only what dev verified and runs; run the pipeline again")


@dataclass
class ImportedImageArgs:
    release: Release
    """The image to copy, by digest."""
    registry_name: str
    """The target ACR's name (``az acr import --name``)."""
    login_server: pulumi.Input[str]
    """The target ACR's login server (the imported reference's host)."""


class ImportedImage(pulumi.ComponentResource):
    """The release's digest, copied into this stack's registry with ``az acr import``."""

    image_ref: pulumi.Output[str]
    """``<login server>/<repository>:<tag>@sha256:...``: the same digest, in this registry."""

    def __init__(self, name: str, args: ImportedImageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelship:image:ImportedImage", name, None, opts)
        release = args.release
        target = f"{release.repository}:{release.tag}"
        environment = {"REGISTRY": args.registry_name, "SOURCE": release.source, "TARGET": target}
        if release.sbom_digest:
            environment.update(SBOM_SOURCE=f"{release.location}@{release.sbom_digest}",
                               SBOM_TARGET=f"{release.repository}:{release.digest.replace(':', '-')}.sbom")
        self.command = local.Command(
            f"{name}-import",
            # By digest: the tag only names it in this registry. --force: the tag may already exist
            # from an earlier import of the same digest (a re-run), which is harmless.
            create=f"{IMPORT} && {IMPORT_SBOM}" if release.sbom_digest else IMPORT,
            environment=environment,
            triggers=[release.digest, *([release.sbom_digest] if release.sbom_digest else [])],
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Read after the import (the command's output), so the workload waits for it.
        self.image_ref = pulumi.Output.all(args.login_server, self.command.stdout).apply(
            lambda parts: f"{parts[0]}/{target}@{release.digest}")
        self.register_outputs({"imageRef": self.image_ref})


@dataclass
class CheckedImage:
    image: pulumi.Output[str]
    """``image_ref``, once :func:`release_kind` accepted the release."""
    previous_release: pulumi.Output[Any]
    """The ``previousRelease`` output (:func:`previous_release`)."""


def checked_image(promote_from: str, image_ref: pulumi.Output[str], release: Release,
                  opts: pulumi.ResourceOptions | None = None) -> CheckedImage:
    """``image_ref``, once the StackReference to ``promote_from`` confirmed ``release``'s digest
    (or this stack's own ``previousRelease`` output names it: a rollback)."""
    dev = pulumi.StackReference(promote_from, opts=opts)
    own_name = f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    own = pulumi.StackReference(f"{pulumi.get_stack()}-own-outputs", stack_name=own_name, opts=opts)
    parts = pulumi.Output.all(dev.get_output("release"), own.get_output("release"),
                              own.get_output("previousRelease"), image_ref)
    kind = parts.apply(lambda p: release_kind(promote_from, p[0], p[1], p[2], release))
    image = pulumi.Output.all(kind, image_ref).apply(lambda p: p[1])
    previous = pulumi.Output.all(kind, parts).apply(
        lambda p: previous_release(p[0], p[1][1], p[1][2], release))
    return CheckedImage(image, previous)


def release_of(verified_ref: pulumi.Output[str], signer: pulumi.Input[str], model: str, version: str,
               size: int, sbom_digest: pulumi.Input[str] = "") -> pulumi.Output[dict]:
    """The ``release`` output of a stack that tested ``verified_ref`` (and stored its SBOM)."""
    def release(parts: list[str]) -> dict:
        return Release(parts[0], parts[0].rsplit("@", 1)[1], model, version, size, parts[1],
                       parts[2]).to_output()

    return pulumi.Output.all(verified_ref, signer, sbom_digest).apply(release)
