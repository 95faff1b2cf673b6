"""Local container budgets follow the model: derived limit, refusal before build, exit explanations."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.sizing import GIB
from delivery import engine
from delivery.settings import DeliveryError, LocalSettings, startup_seconds
from modelship_contract.manifest import Datatype, ModelManifest, TensorSpec


def manifest(size: int) -> ModelManifest:
    return ModelManifest(
        name="digits", version="9.0.0", model_file="model.onnx", sha256="0" * 64, size=size,
        framework="onnx", inputs=(TensorSpec("input", Datatype.FP32, (-1, 64)),),
        outputs=(TensorSpec("label", Datatype.INT64, (-1,)),), created_at="2026-12-05T00:00:00Z",
        source_revision="t",
    )


def settings(tmp_path: Path, **kw) -> LocalSettings:
    return LocalSettings(state_dir=tmp_path, context=tmp_path, instance="t", **kw)


def test_an_empty_limit_is_derived_from_the_model(tmp_path: Path) -> None:
    sized = settings(tmp_path).sized_for(manifest(GIB))
    assert (sized.memory, sized.startup_seconds) == ("1600m", 240)
    assert sized.run_options.args()[9:13] == ["--memory", "1600m", "--memory-swap", "1600m"]
    assert sized.run_options.args()[-2:] == ["--health-start-period", "240s"]


def test_a_too_small_limit_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    with pytest.raises(DeliveryError, match=r"MODELSHIP_MEMORY 1g is too small for digits@9\.0\.0 "
                       r"\(1\.0 GiB\).*at least 1600Mi \(1600m for Docker\).*Nothing was built"):
        settings(tmp_path, memory="1g").sized_for(manifest(GIB))
    kept = settings(tmp_path, memory="3g", startup_seconds=600).sized_for(manifest(GIB))
    assert (kept.memory, kept.startup_seconds) == ("3g", 600)


def test_startup_seconds_from_the_environment() -> None:
    assert startup_seconds({}) is None
    assert startup_seconds({"MODELSHIP_STARTUP_SECONDS": "300"}) == 300
    for bad in ("5", "abc", "-1", "9999"):
        with pytest.raises(ValueError, match="MODELSHIP_STARTUP_SECONDS must be whole seconds in 10-3600"):
            startup_seconds({"MODELSHIP_STARTUP_SECONDS": bad})


def test_exits_are_described_from_docker_inspect() -> None:
    def state(**st) -> dict:
        return {"State": {"Running": False, "Status": "exited", **st}}

    assert engine.describe_exit({"State": {"Running": True}}) is None
    assert engine.describe_exit(state(OOMKilled=True, ExitCode=137)) == (
        "it was killed for running out of memory (State.OOMKilled, exit status 137)")
    assert "SIGKILL (exit status 137)" in engine.describe_exit(state(OOMKilled=False, ExitCode=137))
    assert engine.describe_exit(state(ExitCode=2, Error="")) == "it exited with status 2"
