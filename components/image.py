"""ModelImage: the app image with one model baked in, built by BuildKit and pushed to ACR.

What goes into the build (context ``app/``, Dockerfile, build args, tag ``<rev>-<model>-<version>``)
comes from :mod:`components.build_spec`, shared with local delivery. The build context is passed
relative to the project so the state is the same on every machine; docker-build hashes the context
(minus ``app/.dockerignore``) and rebuilds only when the app code or the model changed.

Push authentication: no registry password is passed. docker-build falls back to the host's Docker
credentials, which the pipeline fills with ``az acr login --name <registry>`` using its own Entra ID
identity (AcrPush, granted by ContainerRegistry). No admin user, no token in state.

``image_ref`` is ``<registry>/<repository>:<tag>@sha256:...``: Kubernetes runs exactly the pushed
bytes, whatever later happens to the tag.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_docker_build as docker_build

from modelship_contract.image import MODEL_NAME_LABEL, MODEL_VERSION_LABEL


@dataclass
class ModelImageArgs:
    login_server: pulumi.Input[str]
    """Registry host the image is pushed to."""
    repository: str
    """Repository inside the registry, e.g. ``modelship/digits``."""
    tag: str
    """Tag (``<revision>-<model>-<version>``)."""
    context: str
    """Build context directory, relative to the project (``app``)."""
    dockerfile: str
    """Dockerfile path, relative to the project (``app/Dockerfile``)."""
    build_args: dict[str, str] = field(default_factory=dict)
    """Non-secret build arguments (base image, revision, model name/version/sha256)."""
    platform: str = "linux/amd64"
    """Target platform of the AKS nodes."""
    push: bool = True
    """Push to the registry (False only for offline tests of the build description)."""
    builder: str | None = "modelship"
    """buildx builder to build with; it must use the docker-container driver, because the default
    ``docker`` driver refuses the registry cache export (docs/azure.md). None: the default builder,
    without cache export."""

    def __post_init__(self) -> None:
        if not self.repository or self.repository != self.repository.lower() or " " in self.repository:
            raise ValueError(f"repository must be lowercase with no spaces, got {self.repository!r}")
        try:
            docker_build.Platform(self.platform)
        except ValueError:
            raise ValueError(f"platform {self.platform!r} is not a docker-build Platform") from None


class ModelImage(pulumi.ComponentResource):
    """One pushed, digest-pinned model server image."""

    image_ref: pulumi.Output[str]
    """``registry/repository:tag@sha256:<digest>``: pinned by digest."""
    digest: pulumi.Output[str]
    """``sha256:<hex>`` of the pushed manifest."""
    tagged_ref: pulumi.Output[str]
    """``registry/repository:tag`` (mutable; for humans, not for deployments)."""

    def __init__(self, name: str, args: ModelImageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelship:image:ModelImage", name, None, opts)
        self.tagged_ref = pulumi.Output.concat(args.login_server, "/", args.repository, ":", args.tag)
        # Layer cache in the registry itself: CI agents start empty, and without it every commit
        # would reinstall the dependencies; with it a code-only change rebuilds the code layer only.
        cache_ref = pulumi.Output.concat(args.login_server, "/", args.repository, ":buildcache")
        cache_from = [docker_build.CacheFromArgs(registry=docker_build.CacheFromRegistryArgs(ref=cache_ref))]
        cache_to = None if args.builder is None else [
            docker_build.CacheToArgs(
                registry=docker_build.CacheToRegistryArgs(
                    ref=cache_ref, mode=docker_build.CacheMode.MAX, image_manifest=True, oci_media_types=True
                )
            )
        ]
        labels = {
            "org.opencontainers.image.revision": args.build_args.get("REVISION", ""),
            MODEL_NAME_LABEL: args.build_args.get("MODEL_NAME", ""),
            MODEL_VERSION_LABEL: args.build_args.get("MODEL_VERSION", ""),
        }
        self.image = docker_build.Image(
            f"{name}-image",
            context=docker_build.BuildContextArgs(location=args.context),
            dockerfile=docker_build.DockerfileArgs(location=args.dockerfile),
            build_args=args.build_args,
            labels={k: v for k, v in labels.items() if v},
            tags=[self.tagged_ref],
            platforms=[docker_build.Platform(args.platform)],
            push=args.push,
            cache_from=cache_from if args.push else None,
            cache_to=cache_to if args.push else None,
            builder=docker_build.BuilderConfigArgs(name=args.builder) if args.builder else None,
            # Builds happen on `pulumi up` only; preview stays fast and needs no registry.
            build_on_preview=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.digest = self.image.digest
        self.image_ref = pulumi.Output.all(self.tagged_ref, self.image.digest).apply(
            lambda parts: _pin(parts[0], parts[1])
        )
        self.register_outputs({"imageRef": self.image_ref, "digest": self.digest})


def _pin(tagged: str, digest: str) -> str:
    if not digest or not digest.startswith("sha256:"):
        raise ValueError(f"image {tagged} has no registry digest ({digest!r}); was it pushed?")
    return f"{tagged}@{digest}"
