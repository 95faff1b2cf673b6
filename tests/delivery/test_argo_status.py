"""The pipelines' wait on the cloud canary: promoted, aborted (stable keeps serving), or a timeout.

Every case is a fixed sequence of Rollout objects as ``kubectl get -o json`` prints them, and a fake
clock: no cluster, no sleeping, no timing.
"""

from __future__ import annotations

import copy
import json
import stat
import sys
from pathlib import Path

import pytest

from delivery import argo_status
from delivery.argo_status import EXIT_ABORTED, EXIT_PROMOTED, EXIT_TIMEOUT, EXIT_UNREACHABLE, judge, wait
from modelship_contract.canary import DEFAULT

STEPS = [{"setWeight": 10}, {"pause": {"duration": "30s"}}, {"analysis": {}},
         {"setWeight": 50}, {"pause": {"duration": "30s"}}, {"analysis": {}}]


def rollout(generation: int = 2, observed: int | None = 2, **status) -> dict:
    base = {"phase": "Progressing", "currentPodHash": "new0hash", "stableRS": "old0hash",
            "observedGeneration": None if observed is None else str(observed)}
    base.update(status)
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "model-server", "namespace": "modelship", "generation": generation},
            "spec": {"strategy": {"canary": {"steps": STEPS}}},
            "status": {k: v for k, v in base.items() if v is not None}}


STALE_HEALTHY = rollout(observed=1, phase="Healthy", currentPodHash="old0hash")
STEP_1 = rollout(currentStepIndex=2, canary={"currentStepAnalysisRunStatus": {
    "name": "model-server-7c9d-2-2", "status": "Running"}})
PAUSED = rollout(phase="Paused", currentStepIndex=4, message="CanaryPauseStep")
PROMOTED = rollout(phase="Healthy", currentStepIndex=6, stableRS="new0hash")
ABORTED = rollout(phase="Degraded", abort=True, currentStepIndex=2,
                  message="RolloutAborted: Rollout aborted update to revision 2: Metric \"canary-analysis\" "
                          "assessed Failed due to failed (1) > failureLimit (0)",
                  canary={"currentStepAnalysisRunStatus": {
                      "name": "model-server-7c9d-2-2", "status": "Failed",
                      "message": "Metric \"canary-analysis\" assessed Failed"}})


def test_a_new_stable_replicaset_is_a_promotion() -> None:
    assert judge(PROMOTED).verdict == "promoted"


def test_an_abort_or_a_degraded_rollout_is_a_failed_release() -> None:
    state = judge(ABORTED)
    assert state.verdict == "aborted"
    assert "step 2/6" in state.summary and "model-server-7c9d-2-2 Failed" in state.summary
    assert "assessed Failed" in state.summary
    degraded = rollout(phase="Degraded",
                       message="ProgressDeadlineExceeded: ReplicaSet has timed out progressing.")
    assert judge(degraded).verdict == "aborted"


def test_the_previous_versions_health_is_not_taken_for_this_ones() -> None:
    """Right after `pulumi up`, the controller may not have read the new spec: Healthy then describes
    the old version, and reading it as a promotion would pass a release no analysis has judged."""
    assert judge(STALE_HEALTHY).verdict == "waiting"
    assert "generation 2" in judge(STALE_HEALTHY).summary
    healthy_old_hash = rollout(phase="Healthy")  # seen, but the new ReplicaSet is not stable yet
    assert judge(healthy_old_hash).verdict == "waiting"
    for state in (STEP_1, PAUSED):
        assert judge(state).verdict == "waiting"


class Clock:
    """A fake monotonic clock that the fake sleep advances."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def run(sequence: list, timeout: float = 1000.0, interval: float = 10.0) -> tuple[int, list[str], Clock]:
    clock, lines, states = Clock(), [], list(sequence)

    def get():
        item = states.pop(0) if len(states) > 1 else states[0]
        if isinstance(item, Exception):
            raise item
        return copy.deepcopy(item)

    code, _ = wait(get, timeout, interval, lines.append, clock=clock, sleep=clock.sleep)
    return code, lines, clock


def test_the_wait_returns_the_rollout_it_judged() -> None:
    clock, answers = Clock(), [STEP_1, ABORTED]

    def get():
        if not answers:
            raise argo_status.ClusterError("read after the decision")
        return copy.deepcopy(answers.pop(0))

    code, seen = wait(get, 1000.0, 10.0, [].append, clock=clock, sleep=clock.sleep)
    assert (code, seen) == (EXIT_ABORTED, ABORTED)
    error = argo_status.ClusterError("kubectl get rollout modelship/model-server: connection refused")

    def refused():
        raise error

    other = Clock()
    assert wait(refused, 30.0, 10.0, [].append, clock=other, sleep=other.sleep) == (EXIT_UNREACHABLE, None)


def test_the_wait_follows_the_steps_to_the_promotion() -> None:
    code, lines, _ = run([STALE_HEALTHY, STEP_1, STEP_1, PAUSED, PROMOTED])
    assert code == EXIT_PROMOTED
    assert len([line for line in lines if "step 2/6" in line]) == 1  # one line per change, not per look
    assert lines[-1].startswith("canary: promoted")


def test_a_failed_analysis_fails_the_wait_and_says_the_stable_version_serves() -> None:
    code, lines, _ = run([STEP_1, ABORTED, PROMOTED])
    assert code == EXIT_ABORTED
    assert "stable version keeps serving" in lines[-1]
    assert any("assessed Failed" in line for line in lines)


def test_a_release_still_running_at_the_deadline_fails_the_run() -> None:
    code, lines, clock = run([STEP_1, PAUSED], timeout=300, interval=10)
    assert code == EXIT_TIMEOUT and clock.now == 300
    assert "not finished after 300 s" in lines[-1]


def test_an_unreachable_cluster_is_its_own_failure() -> None:
    error = argo_status.ClusterError("kubectl get rollout modelship/model-server: connection refused")
    code, lines, _ = run([error], timeout=60)
    assert code == EXIT_UNREACHABLE and "connection refused" in lines[-1]
    code, _, _ = run([error, STEP_1, PROMOTED], timeout=60)  # a blip is retried
    assert code == EXIT_PROMOTED


def test_the_default_deadline_covers_every_step_and_its_longest_analysis() -> None:
    need = sum(s.hold_seconds + DEFAULT.max_wait_seconds for s in DEFAULT.steps)
    assert argo_status.default_timeout() > need


def test_the_cli_reads_the_rollout_with_kubectl(tmp_path: Path) -> None:
    """End to end through a stand-in kubectl that prints the next object of a sequence."""
    states = tmp_path / "states"
    states.mkdir()
    for i, obj in enumerate([STEP_1, ABORTED]):
        (states / f"{i}.json").write_text(json.dumps(obj))
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f"""#!{sys.executable}
import json, pathlib, sys
assert sys.argv[1:6] == ["get", "rollouts.argoproj.io", "model-server", "--namespace", "modelship"], sys.argv
files = sorted(pathlib.Path({str(states)!r}).glob("*.json"))
print(files[0].read_text())
if len(files) > 1:
    files[0].unlink()
""")
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IXUSR)
    code = argo_status.main(["--namespace", "modelship", "--rollout", "model-server", "--interval", "0",
                             "--timeout", "60", "--kubectl", str(kubectl)])
    assert code == EXIT_ABORTED
    usage = argo_status.main(["--namespace", "n", "--rollout", "r", "--timeout", "0"])
    assert usage == argo_status.EXIT_USAGE


@pytest.mark.parametrize("missing", ["metadata", "status"])
def test_a_rollout_without_status_is_waiting_not_a_crash(missing: str) -> None:
    obj = copy.deepcopy(PROMOTED)
    del obj[missing]
    assert judge(obj).verdict == "waiting"


# --- after an abort: what the pipeline needs to move the alias back ------------------------------

LABELS = {"modelship.io/model-name": "digits", "modelship.io/model-version": "1.3.0"}
ABORTED_SPEC = copy.deepcopy(ABORTED)
ABORTED_SPEC["spec"]["template"] = {"metadata": {"labels": LABELS}}
STABLE_LABELS = {**LABELS, "modelship.io/model-version": "1.2.0", "rollouts-pod-template-hash": "old0hash"}
STABLE_SET = {"items": [{"metadata": {"name": "model-server-old0hash"},
                         "spec": {"template": {"metadata": {"labels": STABLE_LABELS}}}}]}
RUN = {"status": {"phase": "Failed", "metricResults": [{
    "name": "canary-analysis", "phase": "Failed", "message": "Metric assessed Failed",
    "measurements": [{"phase": "Failed", "message": "job failed",
                      "metadata": {"job-name": "6f1c.canary-analysis.1"}}]}]}}
SUMMARY = "fail: error_rate pass (0), p99_latency pass (0.024), prediction_drift fail (2.87)"
JOB_LOG = f"""canary analysis: {SUMMARY}
{{
  "status": "fail",
  "checks": [{{"name": "prediction_drift", "status": "fail", "value": 2.87, "threshold": 0.2}}]
}}
"""


def fake_kubectl(answers: dict[str, object]):
    calls: list[list[str]] = []

    def read(args: list[str]):
        calls.append(args)
        answer = answers[args[1] if args[0] == "get" else "logs"]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return read, calls


def test_an_abort_report_names_the_rejected_and_the_serving_version_and_the_figures() -> None:
    read, calls = fake_kubectl({"replicasets": STABLE_SET, "analysisruns.argoproj.io": RUN, "logs": JOB_LOG})
    report = argo_status.abort_report(ABORTED_SPEC, read)
    assert (report["model"], report["rejected"], report["serving"]) == ("digits", "1.3.0", "1.2.0")
    assert calls[0][-3:] == ["rollouts-pod-template-hash=old0hash", "--output", "json"]
    assert calls[2] == ["logs", "job/6f1c.canary-analysis.1", "--namespace", "modelship", "--tail=60"]
    assert report["analysis_run"] == "model-server-7c9d-2-2"
    assert report["analysis"]["figures"]["checks"][0]["value"] == 2.87
    assert report["reason"] == (
        "Argo Rollouts aborted the canary of digits@1.3.0 (modelship/model-server at step 2); 1.2.0 kept "
        f"serving: {SUMMARY}")
    assert report["notes"] == [] and len(json.dumps(report)) < 16_000  # fits a rollback move's evidence


def test_an_abort_report_says_what_it_could_not_read() -> None:
    read, _ = fake_kubectl({"replicasets": argo_status.ClusterError("kubectl get replicasets: forbidden"),
                            "analysisruns.argoproj.io": RUN, "logs": argo_status.ClusterError("gone")})
    report = argo_status.abort_report(ABORTED_SPEC, read)
    assert report["serving"] is None and report["rejected"] == "1.3.0"
    assert report["notes"] == ["stable ReplicaSet: kubectl get replicasets: forbidden",
                               "analysis job 6f1c.canary-analysis.1: gone"]
    assert report["reason"].endswith("the stable version kept serving: canary-analysis Failed: job failed")


def test_the_cli_writes_the_abort_report(tmp_path: Path) -> None:
    states = tmp_path / "answers"
    states.mkdir()
    (states / "rollout.json").write_text(json.dumps(ABORTED_SPEC))
    (states / "replicasets.json").write_text(json.dumps(STABLE_SET))
    (states / "analysisruns.argoproj.io.json").write_text(json.dumps(RUN))
    (states / "logs.json").write_text(JOB_LOG)
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f"""#!{sys.executable}
import pathlib, sys
kind = "logs" if sys.argv[1] == "logs" else sys.argv[2]
kind = "rollout" if kind == "rollouts.argoproj.io" else kind
print((pathlib.Path({str(states)!r}) / (kind + ".json")).read_text())
""")
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IXUSR)
    out = tmp_path / "abort.json"
    code = argo_status.main(["--namespace", "modelship", "--rollout", "model-server", "--interval", "0",
                             "--timeout", "60", "--kubectl", str(kubectl), "--abort-report", str(out)])
    assert code == EXIT_ABORTED
    report = json.loads(out.read_text())
    assert (report["rejected"], report["serving"], report["engine"]) == ("1.3.0", "1.2.0", "argo-rollouts")


def test_the_abort_report_is_built_from_the_rollout_the_wait_judged(tmp_path: Path) -> None:
    """The Rollout is read once more by nobody: a cluster that stops answering for it after the abort
    still gets a report naming the model, the rejected and the serving version (the alias move back)."""
    states = tmp_path / "answers"
    states.mkdir()
    (states / "replicasets.json").write_text(json.dumps(STABLE_SET))
    (states / "analysisruns.argoproj.io.json").write_text(json.dumps(RUN))
    (states / "logs.json").write_text(JOB_LOG)
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f"""#!{sys.executable}
import pathlib, sys
answers = pathlib.Path({str(states)!r})
if sys.argv[2] == "rollouts.argoproj.io":
    seen = answers / "rollout-read"
    if seen.exists():
        sys.exit("error: the server is currently unable to handle the request")
    seen.write_text("")
    print({json.dumps(json.dumps(ABORTED_SPEC))})
    sys.exit(0)
kind = "logs" if sys.argv[1] == "logs" else sys.argv[2]
print((answers / (kind + ".json")).read_text())
""")
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IXUSR)
    out = tmp_path / "abort.json"
    code = argo_status.main(["--namespace", "modelship", "--rollout", "model-server", "--interval", "0",
                             "--timeout", "60", "--kubectl", str(kubectl), "--abort-report", str(out)])
    assert code == EXIT_ABORTED
    report = json.loads(out.read_text())
    assert (report["model"], report["rejected"], report["serving"]) == ("digits", "1.3.0", "1.2.0")
