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
  the analysis run that decided. With ``--abort-report FILE`` it also writes what the pipeline needs
  to move the model alias back (:func:`abort_report`): the model, the rejected version (the new
  spec's pod labels), the version that keeps serving (the stable ReplicaSet's), and the verdict
  with its figures (the AnalysisRun's failed metric and its Job's last output);
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
from pathlib import Path
from typing import Any

from modelship_contract.canary import (
    DEFAULT,
    POD_MODEL_NAME_LABEL,
    POD_MODEL_VERSION_LABEL,
    AnalysisDefinition,
)

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
    """Reads the Rollout ``namespace/name`` (a :func:`kubectl_reader` bound to its ``get``)."""
    read = kubectl_reader(kubectl)
    argv = ["get", "rollouts.argoproj.io", name, "--namespace", namespace, "--output", "json"]
    return lambda: read(argv, what=f"{kubectl} get rollout {namespace}/{name}")


def _run_kubectl(kubectl: str, args: list[str], what: str) -> str:
    """``kubectl <args>``'s output, bounded by :data:`REQUEST_TIMEOUT_S`; ClusterError saying why not."""
    argv = [kubectl, *args, f"--request-timeout={REQUEST_TIMEOUT_S}s"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=REQUEST_TIMEOUT_S + 10,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClusterError(f"{what}: {exc}") from None
    if proc.returncode != 0:
        raise ClusterError(f"{what}: {proc.stderr.strip()[-300:]}")
    return proc.stdout


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ClusterError(f"{what} printed no JSON") from None


def wait(get: Getter, timeout: float, interval: float, log: Callable[[str], None],
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
         ) -> tuple[int, Mapping[str, Any] | None]:
    """Poll until promoted or aborted, or ``timeout`` seconds; return the exit code and the last Rollout
    read (the one the verdict was judged on; None if none could be read), so that an abort report is
    built from what was decided on, not from another read that may fail."""
    deadline = clock() + timeout
    last, error = "", ""
    rollout: Mapping[str, Any] | None = None
    while True:
        try:
            seen = get()
            state, rollout = judge(seen), seen
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
                return EXIT_PROMOTED, rollout
            if state.verdict == "aborted":
                log("canary: ABORTED by Argo Rollouts: the stable version keeps serving. Fix the release, "
                    "or move the model alias back and run again (docs/release.md)")
                return EXIT_ABORTED, rollout
        if clock() >= deadline:
            if error:
                log(f"canary: could not read the Rollout for {timeout:.0f} s: {error}")
                return EXIT_UNREACHABLE, rollout
            log(f"canary: not finished after {timeout:.0f} s ({last}); the Rollout continues on its own, "
                "the run fails")
            return EXIT_TIMEOUT, rollout
        sleep(max(0.0, min(interval, deadline - clock())))


ENGINE = "argo-rollouts"
LOG_LINES = 60
"""Lines of the failed analysis Job's output kept (its summary line and the figures as JSON)."""

Reader = Callable[[list[str]], Any]
"""Runs ``kubectl <args>`` and returns its JSON (``-o json``) or text; raises ClusterError."""


def abort_report(rollout: Mapping[str, Any], kubectl: Reader) -> dict[str, Any]:
    """What an aborted release was and why, for the alias move back (``modelship-models rollback
    --evidence``). Each lookup is best effort: what cannot be read is None, and says so in ``notes``."""
    meta, spec, status = rollout.get("metadata") or {}, rollout.get("spec") or {}, rollout.get("status") or {}
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    notes: list[str] = []
    report: dict[str, Any] = {
        "kind": "canary", "engine": ENGINE, "verdict": "fail", "rollout": f"{namespace}/{name}",
        "model": labels.get(POD_MODEL_NAME_LABEL), "rejected": labels.get(POD_MODEL_VERSION_LABEL),
        "serving": None, "canary_hash": status.get("currentPodHash"), "stable_hash": status.get("stableRS"),
        "step": status.get("currentStepIndex"), "message": status.get("message"),
        "analysis_run": None, "metrics": [], "analysis": None,
    }
    stable = status.get("stableRS")
    try:
        sets = kubectl(["get", "replicasets", "--namespace", namespace, "--selector",
                        f"rollouts-pod-template-hash={stable}", "--output", "json"]) if stable else {}
        for item in (sets or {}).get("items") or []:
            pod = ((item.get("spec") or {}).get("template") or {}).get("metadata") or {}
            report["serving"] = (pod.get("labels") or {}).get(POD_MODEL_VERSION_LABEL)
        if report["serving"] is None:
            notes.append(f"no stable ReplicaSet with hash {stable!r} names its model version")
    except ClusterError as exc:
        notes.append(f"stable ReplicaSet: {exc}")
    run_name = ((status.get("canary") or {}).get("currentStepAnalysisRunStatus") or {}).get("name")
    report["analysis_run"] = run_name
    if run_name:
        try:
            run = kubectl(["get", "analysisruns.argoproj.io", run_name, "--namespace", namespace,
                           "--output", "json"]) or {}
            for metric in (run.get("status") or {}).get("metricResults") or []:
                last = (metric.get("measurements") or [{}])[-1]
                report["metrics"].append({
                    "name": metric.get("name"), "phase": metric.get("phase"),
                    "message": metric.get("message"),
                    "measurement": last.get("message"), "job": (last.get("metadata") or {}).get("job-name"),
                })
        except ClusterError as exc:
            notes.append(f"analysis run {run_name}: {exc}")
    failed = next((m for m in report["metrics"] if m["phase"] in ("Failed", "Error", "Inconclusive")
                   and m["job"]), None)
    if failed:
        try:
            report["analysis"] = analysis_output(kubectl(["logs", f"job/{failed['job']}", "--namespace",
                                                          namespace, f"--tail={LOG_LINES}"]))
        except ClusterError as exc:
            notes.append(f"analysis job {failed['job']}: {exc}")
    report["notes"] = notes
    report["reason"] = _reason(report)
    return report


def analysis_output(text: Any) -> dict[str, Any] | None:
    """The verdict ``python -m modelserver.canary analyze`` printed: its summary line
    ("canary analysis: fail: error_rate pass (0), ... prediction_drift fail (2.87)") and its figures
    (the JSON on stdout), from the Job's log."""
    if not isinstance(text, str):
        return None
    lines = text.splitlines()
    summary = next((line.split("canary analysis: ", 1)[1] for line in reversed(lines)
                    if "canary analysis: " in line), None)
    figures = None
    start = next((i for i, line in enumerate(lines) if line.startswith("{")), None)
    if start is not None:
        end = next((i for i in range(start, len(lines)) if lines[i].startswith("}")), None)
        if end is not None:
            try:
                figures = json.loads("\n".join(lines[start:end + 1]))
            except ValueError:
                figures = None
    return {"summary": summary, "figures": figures} if summary or figures else None


def _reason(report: Mapping[str, Any]) -> str:
    step = report.get("step")
    where = f" at step {step}" if step is not None else ""
    why = ((report.get("analysis") or {}).get("summary")
           or next((f"{m['name']} {m['phase']}: {m['measurement'] or m['message']}"
                    for m in report.get("metrics") or [] if m.get("phase") != "Successful"), None)
           or report.get("message") or "no analysis verdict recorded")
    return (f"Argo Rollouts aborted the canary of {report.get('model')}@{report.get('rejected')} "
            f"({report.get('rollout')}{where}); {report.get('serving') or 'the stable version'} "
            f"kept serving: {why}")[:1000]


def kubectl_reader(kubectl: str = "kubectl") -> Reader:
    def read(args: list[str], what: str | None = None) -> Any:
        what = what or f"{kubectl} {' '.join(args[:2])}"
        out = _run_kubectl(kubectl, args, what)
        return _json(out, what) if "json" in args else out

    return read


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m delivery.argo_status",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--rollout", required=True, help="name of the Rollout")
    parser.add_argument("--timeout", type=float, default=None,
                        help=f"seconds (default: from the analysis definition, {default_timeout()})")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between looks (default 10)")
    parser.add_argument("--kubectl", default="kubectl")
    parser.add_argument("--abort-report", type=Path, metavar="FILE",
                        help="after an abort, write what was rejected, what serves and why (JSON) here")
    args = parser.parse_args(argv)
    timeout = default_timeout() if args.timeout is None else args.timeout
    if timeout <= 0 or args.interval < 0:
        print("argo_status: --timeout must be positive and --interval not negative", file=sys.stderr)
        return EXIT_USAGE
    get = kubectl_getter(args.namespace, args.rollout, args.kubectl)
    code, rollout = wait(get, timeout, args.interval, lambda line: print(line, file=sys.stderr, flush=True))
    if code == EXIT_ABORTED and args.abort_report is not None:
        # The Rollout the abort was judged on (an abort is only ever judged on one that was read).
        report = abort_report(rollout or {}, kubectl_reader(args.kubectl))
        args.abort_report.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        print(f"canary: {report['reason']}", file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
