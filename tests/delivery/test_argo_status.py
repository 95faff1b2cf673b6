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

    code = wait(get, timeout, interval, lines.append, clock=clock, sleep=clock.sleep)
    return code, lines, clock


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
