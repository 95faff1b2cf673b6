"""The container test every image passes, by reference, before a workload may run it.

One test for both paths. It runs the image the way a pod of the Deployment runs it: non-root uid
10001, read-only root filesystem with a small writable ``/tmp``, every capability dropped, no
privilege escalation, and the stack's memory and CPU limits. Then the smoke test: ready within
the model's start-up budget, one V2 inference with a known answer, and the model version it
reports. It also reads the model's signer from the server's start-up log line (the server
verifies the signature before it opens a socket).

- Locally, :func:`delivery.build.check_candidate` runs it on the built image (by image id) before the push.
- In the cloud, the stack's ``ImageTest`` (``components/image_test.py``, a ``pulumi-command``
  resource between the image build and the workload) runs
  ``python -m delivery.imagetest --image REGISTRY/REPO:TAG@sha256:...`` on the machine running
  ``pulumi up``; the Deployment takes its image only from that resource's output, which exists only
  when this command printed ``verified <image>`` and exited 0.

Exit codes: 0 passed (stdout: ``signer <who signed the model>``, then ``verified <image>`` last),
1 the image failed (the message
names the check), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import uuid
from collections.abc import Callable, Mapping

from components.image_test import SIGNER_PREFIX, VERIFIED_PREFIX
from delivery import engine
from delivery.processes import free_port
from delivery.smoke import SmokeError, SmokeResult, run_smoke
from modelship_contract import image as image_contract

PULL_TIMEOUT_S = 600.0


class ImageTestError(RuntimeError):
    """The image failed its container test; the message says which check and what was seen."""


@dataclasses.dataclass(frozen=True)
class Verified:
    """What a passing container test saw."""

    image: str
    smoke: SmokeResult
    signer: str
    """Who signed the model baked into the image, as the server reported it at start-up."""


def signer_from_logs(text: str) -> str:
    """The ``signer`` of the server's "model verified and loaded" JSON log line, or ``unknown``."""
    for line in text.splitlines():
        try:
            record = json.loads(line[line.index("{"):]) if "{" in line else None
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("signer"):
            return str(record["signer"])
    return "unknown"


def run(image: str, model: str, version: str, options: engine.RunOptions, wait_s: float, *,
        name: str | None = None, labels: Mapping[str, str] | None = None,
        gone: Callable[[], str | None] | None = None, log: Callable[[str], None] | None = None) -> Verified:
    """Run ``image`` with ``options`` on a free loopback port, smoke-test it, remove it.

    ``gone`` (optional) explains why the container stopped (an OOM kill with the figures); by
    default the container's exit is described from ``docker inspect``.
    """
    name = name or f"modelship-imagetest-{uuid.uuid4().hex[:12]}"
    engine.remove_container(name)
    port = free_port()

    def stopped() -> str | None:
        state = engine.container_state(name)
        if state is None:
            return f"container {name} no longer exists"
        reason = engine.describe_exit(state)
        return None if reason is None else f"container {name} stopped: {reason}"

    try:
        try:
            engine.run_container(image, name, port, options, dict(labels or {"modelship.role": "imagetest"}))
        except engine.DockerError as exc:
            raise ImageTestError(f"cannot run {image}: {exc}") from exc
        try:
            result = run_smoke(f"http://127.0.0.1:{port}", model=model, expect_version=version,
                               timeout=wait_s, interval=0.5, log=log, gone=gone or stopped)
        except SmokeError as exc:
            raise ImageTestError(f"{exc}\ncontainer log:\n{engine.logs_tail(name)}") from exc
        logs = engine.docker("logs", name, check=False)
        signer = signer_from_logs(logs.stdout + logs.stderr)
    finally:
        engine.remove_container(name)
    return Verified(image, result, signer)


def main(argv: list[str] | None = None) -> int:
    from delivery.settings import k8s_cpu_to_docker, k8s_memory_to_docker

    parser = argparse.ArgumentParser(prog="python -m delivery.imagetest", description=__doc__.split("\n")[0])
    parser.add_argument("--image", required=True,
                        help="REGISTRY/REPO[:TAG]@sha256:<64 hex> (pinned by digest)")
    parser.add_argument("--model", required=True, help="model name the image serves")
    parser.add_argument("--version", required=True, help="model version it must report")
    parser.add_argument("--memory", required=True, help="the pod's memory limit (Kubernetes quantity, 640Mi)")
    parser.add_argument("--cpu", required=True, help="the pod's CPU limit (Kubernetes quantity, 1 or 500m)")
    parser.add_argument("--startup-seconds", type=int, required=True,
                        help="the pod's start-up budget: how long the server may take to answer ready")
    args = parser.parse_args(argv)
    try:
        if not image_contract.DIGEST_REF_RE.match(args.image):
            raise ValueError(f"--image {args.image!r} is not pinned by digest "
                             "(REGISTRY/REPO[:TAG]@sha256:<64 hex>)")
        if not 1 <= args.startup_seconds <= 3600:
            raise ValueError(f"--startup-seconds {args.startup_seconds}: use 1-3600")
        memory, cpus = k8s_memory_to_docker(args.memory), k8s_cpu_to_docker(args.cpu)
        options = engine.RunOptions(memory=memory, cpus=cpus, health_start_period=args.startup_seconds)
    except ValueError as exc:
        parser.print_usage(sys.stderr)
        print(f"imagetest: error: {exc}", file=sys.stderr)
        return 2

    def log(line: str) -> None:
        print(f"imagetest: {line}", file=sys.stderr, flush=True)

    log(f"pulling {args.image}")
    if not engine.pull(args.image, PULL_TIMEOUT_S):
        print(f"imagetest: FAILED: cannot pull {args.image} within {PULL_TIMEOUT_S:.0f} s (is the registry "
              "reachable and `az acr login` done?)", file=sys.stderr)
        return 1
    log(f"running it as uid {image_contract.UID}, read-only root filesystem, memory {args.memory}, "
        f"cpu {args.cpu}")
    try:
        verified = run(args.image, args.model, args.version, options, float(args.startup_seconds), log=log)
    except (ImageTestError, engine.DockerError) as exc:
        print(f"imagetest: FAILED: {args.image}: {exc}", file=sys.stderr)
        return 1
    log(f"passed: ready after {verified.smoke.ready_after_s:.1f} s, label {verified.smoke.label}, "
        f"{args.model}@{verified.smoke.version}, model signed by {verified.signer}")
    print(f"{SIGNER_PREFIX}{verified.signer}")
    print(f"{VERIFIED_PREFIX}{args.image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
