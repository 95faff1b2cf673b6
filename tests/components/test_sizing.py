"""Memory and start-up budgets follow the model's size: derived figures, refusals, the Rollout's pods."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pytest

from components import sizing, testing
from components.rollout import ROLLOUT_TYPE as ROLLOUT
from components.service import CanaryArgs, ModelServiceArgs
from components.sizing import GIB, MIB, SizingError, for_model
from components.stack import build_stack
from components.testing import one, run_stack
from tests.components.conftest import make_settings


def _claim_size(model_dir: Path, size: int) -> None:
    """Only the manifest is read by the stack: a manifest claiming ``size`` bytes stands for a large model."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["size"] = size
    (model_dir / "manifest.json").write_text(json.dumps(manifest))


def test_a_small_model_gets_the_runtime_and_two_requests_in_flight() -> None:
    small = for_model(4424)
    # Floor for the request; the limit is the runtime plus two workers' largest requests.
    assert (small.memory_request, small.memory_limit, small.docker_memory) == ("256Mi", "576Mi", "576m")
    assert small.startup_seconds == sizing.STARTUP_BASE_S


def test_one_gib_gets_one_copy_and_meets_the_issue_target() -> None:
    big = for_model(GIB)
    assert big.memory_request == "1216Mi"  # 1024 + 160, rounded up to 64
    assert big.memory_limit == "1600Mi"  # 1024 + 160 + 2 x (128 + 72), rounded up to 64
    # Issue 15: container memory <= 1.3 x model + 300 MB; the limit itself is below it.
    assert big.memory_limit_mib * MIB <= 1.3 * GIB + 300e6
    assert big.startup_seconds == sizing.STARTUP_BASE_S + sizing.STARTUP_S_PER_GIB
    assert big.startup_failure_threshold * sizing.PROBE_PERIOD_S >= big.startup_seconds
    # Memory grows with the model, never the other way round.
    sizes = [MIB, 100 * MIB, 300 * MIB, GIB, 3 * GIB // 2]
    limits = [for_model(s).memory_limit_mib for s in sizes]
    assert limits == sorted(limits) and limits[-1] > limits[0]


def test_a_configured_limit_below_the_need_is_refused_with_the_figure() -> None:
    too_small = (r"memoryLimit 512Mi is too small for digits@2 \(1\.0 GiB\): it needs the model once "
                 r"\(1\.0 GiB, mapped\), 160 MiB of runtime and 2 workers x 200 MiB for a request each "
                 r"\(128 MiB of tensors \+ 72 MiB to decode the body\), so use at least 1600Mi")
    with pytest.raises(SizingError, match=too_small):
        for_model(GIB, model="digits@2", memory_limit="512Mi")
    with pytest.raises(SizingError, match=r"memoryRequest 1Gi is too small.*at least 1216Mi"):
        for_model(GIB, memory_request="1Gi")
    with pytest.raises(SizingError, match=r"MODELSHIP_MEMORY 1g is too small.*1600m for Docker"):
        for_model(GIB, memory_limit="1g", keys=("-", "MODELSHIP_MEMORY", "-"))
    # At or above the need is kept as configured.
    assert for_model(GIB, memory_limit="3Gi", startup_seconds=900).memory_limit == "3072Mi"
    assert for_model(GIB, startup_seconds=900).startup_seconds == 900


def test_the_component_refuses_too_little_memory_itself() -> None:
    base = dict(image="r.io/m@sha256:" + "0" * 64, model_name="digits", model_version="1",
                dns_label="modelship-x", location="westeurope",
                canary=CanaryArgs(prometheus_url="https://amw", analysis_client_id="c"))
    with pytest.raises(SizingError, match="memory_limit 512Mi is too small"):
        ModelServiceArgs(**base, model_size=GIB, memory_limit="512Mi")
    assert ModelServiceArgs(**base, model_size=GIB).resources.memory_limit == "1600Mi"


def test_the_rollout_limits_and_startup_probe_follow_a_large_model(project: Path) -> None:
    _claim_size(project / "app" / "model", 300 * MIB)
    container = one(run_stack(make_settings(), project_root=project), ROLLOUT) \
        .inputs["spec"]["template"]["spec"]["containers"][0]
    need = for_model(300 * MIB)
    assert container["resources"]["requests"]["memory"] == need.memory_request == "512Mi"
    assert container["resources"]["limits"]["memory"] == need.memory_limit == "896Mi"
    probe = container["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= need.startup_seconds > 120


def test_configured_values_reach_the_rollout(project: Path) -> None:
    run = run_stack(make_settings(memoryRequest="300Mi", memoryLimit="1Gi", startupSeconds="600"),
                    project_root=project)
    container = one(run, ROLLOUT).inputs["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["memory"] == "300Mi"
    assert container["resources"]["limits"]["memory"] == "1024Mi"
    assert container["startupProbe"]["failureThreshold"] == 600 // sizing.PROBE_PERIOD_S


def test_a_too_small_memory_limit_registers_nothing(project: Path, mocks: testing.RecordingMocks) -> None:
    _claim_size(project / "app" / "model", GIB)

    def program() -> None:
        with pytest.raises(SizingError, match=r"memoryLimit 1Gi is too small .* at least 1600Mi"):
            build_stack(make_settings(memoryLimit="1Gi"), project, revision="r1")

    pulumi.runtime.test(program)()
    assert mocks.resources == [] and mocks.invokes == []


def test_the_per_request_figures_are_the_servers_own() -> None:
    """The sizing counts what the image runs with: its request cap (the contract) and body limit."""
    from modelserver.settings import Settings

    assert Settings().request_memory_mib == sizing.REQUEST_MEMORY_MIB
    assert Settings.from_env({}).request_memory_mib == sizing.REQUEST_MEMORY_MIB
    # 17 x the largest body (measured decode peak) fits the per-worker body term.
    assert 17 * Settings().max_body_bytes <= sizing.BODY_MIB * MIB
