"""ImageTest: the container test of a pushed image, by digest, in the graph between build and workload.

A ``pulumi-command`` ``local.Command`` runs ``python -m delivery.imagetest`` (the same test the
local flow runs before its push) on the machine running ``pulumi up``: it pulls the image by
digest, runs it as the pod would (non-root, read-only root filesystem, the Deployment's memory and
CPU limits), waits for ready within the start-up budget, sends one V2 inference with a known
answer and checks the model version. ``verified_ref`` is read from the command's output and is
the only image reference the workload may take, so:

- a failed test fails the ``create`` step, ``pulumi up`` stops and the workload is not touched;
- a failed ``create`` leaves nothing in the state, and a new digest replaces the resource (the
  image is in its environment and triggers), so re-running ``pulumi up`` runs the test again
  and cannot deploy an image that failed it;
- an image that passed is not re-tested on later runs (same digest, no change).

The test needs Docker and a login to the registry where ``pulumi up`` runs (the pipeline's
``prepare-push`` step does both, for the push); see docs/azure.md, "Test by digest before deploy".
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import pulumi
from pulumi_command import local

VERIFIED_PREFIX = "verified "
"""What the last line of a passing run prints before the image (``delivery.imagetest``)."""
SIGNER_PREFIX = "signer "
"""The line before it: who signed the model, as the server reported when it verified it."""
COMMAND = "python -m delivery.imagetest"
"""The container test; the pipelines put the project's virtualenv first on PATH."""


@dataclass
class ImageTestArgs:
    image: pulumi.Input[str]
    """The pushed image, ``registry/repository:tag@sha256:...``."""
    model_name: str
    """Model the image serves."""
    model_version: str
    """Version the server must report."""
    memory_limit: str
    """The pod's memory limit (Kubernetes quantity, ``640Mi``)."""
    cpu_limit: str
    """The pod's CPU limit (``1``, ``500m``)."""
    startup_seconds: int
    """The pod's start-up budget."""

    def __post_init__(self) -> None:
        if not 1 <= self.startup_seconds <= 3600:
            raise ValueError(f"startup_seconds must be 1-3600, got {self.startup_seconds}")


def last_line(stdout: str) -> str:
    """The last non-blank line of a command's output (where a step reports its result), or ``""``."""
    lines = [line.strip() for line in (stdout or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def verified_image(stdout: str, image: str) -> str:
    """``image`` if the test's output ends with ``verified <image>``; else an error naming both."""
    last = last_line(stdout)
    if last != f"{VERIFIED_PREFIX}{image}":
        raise ValueError(f"the container test of {image} did not confirm it (its output ended with "
                         f"{last or 'nothing'!r}); the workload keeps its current image")
    return image


def signer_of(stdout: str) -> str:
    """The ``signer`` line of a passing run's output, or ``unknown``."""
    for line in reversed((stdout or "").splitlines()):
        if line.startswith(SIGNER_PREFIX):
            return line[len(SIGNER_PREFIX):].strip() or "unknown"
    return "unknown"


class ImageTest(pulumi.ComponentResource):
    """The container test of one image digest; ``verified_ref`` exists only if it passed."""

    verified_ref: pulumi.Output[str]
    """The image reference, once the test passed (the workload's only source of its image)."""
    signer: pulumi.Output[str]
    """Who signed the model in the tested image (the server verified it at start-up)."""

    def __init__(self, name: str, args: ImageTestArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelship:image:ImageTest", name, None, opts)
        flags = " ".join(shlex.quote(part) for part in (
            "--model", args.model_name, "--version", args.model_version, "--memory", args.memory_limit,
            "--cpu", args.cpu_limit, "--startup-seconds", str(args.startup_seconds)))
        self.command = local.Command(
            f"{name}-run",
            # The image travels in the environment, not in the command text: no quoting of
            # registry names, and the same command string for every digest.
            create=f'{COMMAND} --image "$MODELSHIP_IMAGE" {flags}',
            environment={"MODELSHIP_IMAGE": args.image},
            triggers=[args.image],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.verified_ref = pulumi.Output.all(self.command.stdout, args.image).apply(
            lambda parts: verified_image(parts[0], parts[1]))
        self.signer = self.command.stdout.apply(signer_of)
        self.register_outputs({"verifiedRef": self.verified_ref, "signer": self.signer})
