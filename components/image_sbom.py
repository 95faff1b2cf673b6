"""ImageSbom: the image's CycloneDX SBOM, stored in ACR next to the image, after its container test.

A ``pulumi-command`` ``local.Command`` runs ``python -m delivery.sbom push --image <ref> --acr
<name>`` on the machine running ``pulumi up`` (the same code the local flow uses): it generates the
SBOM of the image's Python environment and Debian packages from the pulled image and pushes it as
an OCI artifact whose subject is the image digest (ACR lists it under the OCI referrers API).

Why a resource in the graph, and after ``ImageTest``:

- its only image input is ``ImageTest.verified_ref``, which exists only once the container test
  passed: an image that failed its test gets no SBOM, by the graph, not by convention;
- ``image_ref`` (the same reference, read after the command printed the SBOM's digest) is what
  the workload runs, so nothing is deployed without its SBOM in the registry, as locally;
- the command fetches its ACR token itself, at run time (``az acr login --expose-token``, read
  from a pipe, see ``delivery/oci.py``): no credential is an input, so none is in the state or
  the preview; a new digest replaces the resource (the image is in its environment and triggers).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_command import local

from components.image_test import last_line
from modelship_contract.image import DIGEST_RE

COMMAND = "python -m delivery.sbom push"
"""The SBOM step; the pipelines put the project's virtualenv first on PATH."""
DIGEST_PREFIX = "sbom "
"""What the last line of a successful push prints before the artifact's digest (``delivery.sbom``)."""


@dataclass
class ImageSbomArgs:
    image: pulumi.Input[str]
    """The verified image, ``<login server>/<repository>:<tag>@sha256:...`` (``ImageTest.verified_ref``)."""
    registry_name: str
    """The ACR that holds it: the name ``az acr login --expose-token`` takes."""


def sbom_digest(stdout: str, image: str) -> str:
    """The SBOM artifact's digest from the step's last output line; else an error naming the image."""
    last = last_line(stdout)
    digest = last[len(DIGEST_PREFIX):] if last.startswith(DIGEST_PREFIX) else ""
    if not DIGEST_RE.match(digest):
        raise ValueError(f"the SBOM step of {image} did not report a stored SBOM (its output ended with "
                         f"{last or 'nothing'!r}); the workload keeps its current image")
    return digest


class ImageSbom(pulumi.ComponentResource):
    """The SBOM of one verified image digest, stored beside it; ``image_ref`` exists only once it is."""

    digest: pulumi.Output[str]
    """The SBOM artifact's digest (``sha256:...``) in the image's repository."""
    image_ref: pulumi.Output[str]
    """The image reference, once its SBOM is stored (what the workload runs)."""

    def __init__(self, name: str, args: ImageSbomArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelship:image:ImageSbom", name, None, opts)
        self.command = local.Command(
            f"{name}-push",
            # Values travel in the environment: the same command text for every digest, nothing to quote.
            create=f'{COMMAND} --image "$MODELSHIP_IMAGE" --acr "$MODELSHIP_ACR"',
            environment={"MODELSHIP_IMAGE": args.image, "MODELSHIP_ACR": args.registry_name},
            triggers=[args.image],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.digest = pulumi.Output.all(self.command.stdout, args.image).apply(
            lambda parts: sbom_digest(parts[0], parts[1]))
        self.image_ref = pulumi.Output.all(args.image, self.digest).apply(lambda parts: parts[0])
        self.register_outputs({"digest": self.digest, "imageRef": self.image_ref})
