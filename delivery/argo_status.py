"""Wait for the cloud canary: the Argo Rollouts Rollout is promoted, or aborted back to stable.

``pulumi up`` returns as soon as the Rollout's new spec is applied; Argo Rollouts then runs the
canary steps, each followed by the analysis Job (the same ``python -m modelserver.canary analyze``
that ``make up`` runs). The pipelines run this after ``pulumi up`` so that the run's outcome is the
release's outcome:

* **promoted** (exit 0): the controller has seen this spec (``status.observedGeneration``), the
  Rollout is ``Healthy`` and its stable ReplicaSet is the new one (``stableRS == currentPodHash``);
* **aborted** (exit 1): an analysis failed, the canary never became ready before its progress
  deadline, or someone aborted it: ``status.abort`` or phase ``Degraded``. Argo Rollouts has
  already scaled the canary away; the stable version keeps serving. The message names the step and
  the analysis run that decided;
* **still running at the deadline** (exit 3): the run fails, the Rollout carries on by itself;
* **the cluster could not be asked** until the deadline (exit 4); bad arguments (exit 2).

It asks ``kubectl get rollouts.argoproj.io`` (the pipeline has signed in; the stack's kubeconfig
uses kubelogin), with a bounded request timeout, every ``--interval`` seconds, and prints one line
per change of step or phase. Standard library plus the contract package.

    python -m delivery.argo_status --namespace modelship --rollout model-server [--timeout S]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from modelship_contract.canary import DEFAULT, AnalysisDefinition

EXIT_PROMOTED, EXIT_ABORTED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_UNREACHABLE = 0, 1, 2, 3, 4
REQUEST_TIMEOUT_S = 20
"""Upper bound of one ``kubectl get``."""
JOB_GRACE_S = 120
"""Per analysis: the Job's start-up on top of the definition's ``max_wait_seconds``."""
START_GRACE_S = 600
"""Scheduling, image pulls and the model's start-up before the first step, and the final scale-up."""


def default_timeout(definition: AnalysisDefinition = DEFAULT) -> int:
    """Seconds a release may take: every step's hold and the longest its analysis may wait."""
    per_step = sum(s.hold_seconds + definition.max_wait_seconds + JOB_GRACE_S for s in definition.steps)
    return START_GRACE_S + per_step


@dataclasses.dataclass(frozen=True)
class State:
    """What one look at the Rollout says."""

    verdict: str
    """``promoted``, ``aborted`` or ``waiting``."""
    summary: str
    """One line for the log: phase, step, weight, the analysis and the controller's message."""


def judge(rollout: Mapping[str, Any]) -> State:
    """Read a Rollout object (``kubectl get -o json``) as promoted, aborted or still waiting."""
    meta, spec, status = rollout.get("metadata") or {}, rollout.get("spec") or {}, rollout.get("status") or {}
    phase = status.get("phase") or "Unknown"
    steps = ((spec.get("strategy") or {}).get("canary") or {}).get("steps") or []
    index = status.get("currentStepIndex")
    weight = ((status.get("canary") or {}).get("weights") or {}).get("canary", {}).get("weight")
    run = (status.get("canary") or {}).get("currentStepAnalysisRunStatus") or {}
    parts = [f"phase {phase}"]
    if index is not None and steps:
        parts.append(f"step {min(int(index), len(steps))}/{len(steps)}")
    if weight is not None:
        parts.append(f"canary weight {weight}%")
    if run:
        parts.append(f"analysis {run.get('name', '?')} {run.get('status', '?')}"
                     + (f" ({run['message']})" if run.get("message") else ""))
    if status.get("message"):
        parts.append(str(status["message"]))
    summary = ", ".join(parts)
    # Until the controller has read this generation, phase and hashes describe the previous spec.
    if str(status.get("observedGeneration", "")) != str(meta.get("generation", "")):
        return State("waiting", f"waiting for the controller to see generation {meta.get('generation')}; "
                                + summary)
    if status.get("abort") or phase == "Degraded":
        return State("aborted", summary)
    if phase == "Healthy" and status.get("currentPodHash") and \
            status.get("currentPodHash") == status.get("stableRS"):
        return State("promoted", summary)
    return State("waiting", summary)


Getter = Callable[[], Mapping[str, Any]]


class ClusterError(RuntimeError):
    """kubectl could not read the Rollout; the message says why."""


def kubectl_getter(namespace: str, name: str, kubectl: str = "kubectl") -> Getter:
    def get() -> Mapping[str, Any]:
        argv = [kubectl, "get", "rollouts.argoproj.io", name, "--namespace", namespace, "--output", "json",
                f"--request-timeout={REQUEST_TIMEOUT_S}s"]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=REQUEST_TIMEOUT_S + 10,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ClusterError(f"{kubectl} get rollout {namespace}/{name}: {exc}") from None
        if proc.returncode != 0:
            raise ClusterError(f"{kubectl} get rollout {namespace}/{name}: {proc.stderr.strip()[-300:]}")
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise ClusterError(f"{kubectl} get rollout {namespace}/{name} printed no JSON") from None

    return get


def wait(get: Getter, timeout: float, interval: float, log: Callable[[str], None],
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> int:
    """Poll until promoted or aborted, or ``timeout`` seconds; return the exit code."""
    deadline = clock() + timeout
    last, error = "", ""
    while True:
        try:
            state = judge(get())
            error = ""
        except ClusterError as exc:
            state, error = None, str(exc)
            if error != last:
                log(f"canary: cannot read the Rollout yet: {error}")
                last = error
        if state is not None:
            if state.summary != last:
                log(f"canary: {state.summary}")
                last = state.summary
            if state.verdict == "promoted":
                log("canary: promoted: every step's analysis passed; the new version is the stable one")
                return EXIT_PROMOTED
            if state.verdict == "aborted":
                log("canary: ABORTED by Argo Rollouts: the stable version keeps serving. Fix the release, "
                    "or move the model alias back and run again (docs/release.md)")
                return EXIT_ABORTED
        if clock() >= deadline:
            if error:
                log(f"canary: could not read the Rollout for {timeout:.0f} s: {error}")
                return EXIT_UNREACHABLE
            log(f"canary: not finished after {timeout:.0f} s ({last}); the Rollout continues on its own, "
                "the run fails")
            return EXIT_TIMEOUT
        sleep(max(0.0, min(interval, deadline - clock())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m delivery.argo_status",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--rollout", required=True, help="name of the Rollout")
    parser.add_argument("--timeout", type=float, default=None,
                        help=f"seconds (default: from the analysis definition, {default_timeout()})")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between looks (default 10)")
    parser.add_argument("--kubectl", default="kubectl")
    args = parser.parse_args(argv)
    timeout = default_timeout() if args.timeout is None else args.timeout
    if timeout <= 0 or args.interval < 0:
        print("argo_status: --timeout must be positive and --interval not negative", file=sys.stderr)
        return EXIT_USAGE
    return wait(kubectl_getter(args.namespace, args.rollout, args.kubectl), timeout, args.interval,
                lambda line: print(line, file=sys.stderr, flush=True))


if __name__ == "__main__":
    sys.exit(main())
