"""The predictor: verification at load, the signature check, and inference without any web framework."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from modelserver.errors import InvalidInput, NotReady
from modelserver.manifest import MANIFEST_FILE, ManifestError
from modelserver.predictor import Predictor


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> Predictor:
    loaded = Predictor(model_dir)
    loaded.load()
    return loaded


def test_predicts_a_batch(predictor: Predictor) -> None:
    digits = load_digits()
    out = predictor.predict({"input": digits.data[:64].astype(np.float32)})
    assert out["label"].shape == (64,) and out["probabilities"].shape == (64, 10)
    assert out["label"][0] == 0
    assert (out["label"] == digits.target[:64]).mean() > 0.9


def test_returns_only_requested_outputs(predictor: Predictor) -> None:
    out = predictor.predict({"input": np.zeros((2, 64), np.float32)}, ["label"])
    assert list(out) == ["label"]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"x": np.zeros((1, 64), np.float32)},
            "unknown input 'x': the model takes 'input' FP32 \\[-1, 64\\]",
        ),
        ({}, "missing input 'input'"),
        ({"input": np.zeros((1, 64), np.float64)}, "input 'input' must be FP32, got float64"),
        ({"input": np.zeros((1, 63), np.float32)}, "has shape \\[1, 63\\], expected \\[-1, 64\\]"),
        ({"input": np.zeros((64,), np.float32)}, "has shape \\[64\\], expected \\[-1, 64\\]"),
        ({"input": np.zeros((0, 64), np.float32)}, "empty batch"),
    ],
)
def test_inputs_off_the_signature_are_refused(predictor: Predictor, inputs: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        predictor.predict(inputs)


def test_unknown_output_is_refused(predictor: Predictor) -> None:
    with pytest.raises(
        InvalidInput, match="unknown output 'score': the model produces 'label', 'probabilities'"
    ):
        predictor.predict({"input": np.zeros((1, 64), np.float32)}, ["score"])


def test_not_loaded_is_not_ready(model_dir: Path) -> None:
    fresh = Predictor(model_dir)
    assert not fresh.ready
    with pytest.raises(NotReady):
        fresh.predict({"input": np.zeros((1, 64), np.float32)})


def test_tampered_model_is_refused(model_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(model_dir, tmp_path, dirs_exist_ok=True)
    data = bytearray((tmp_path / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="sha256 mismatch"):
        Predictor(tmp_path).load()


def test_manifest_that_lies_about_the_signature_is_refused(model_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(model_dir, tmp_path, dirs_exist_ok=True)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    manifest["inputs"][0]["shape"] = [-1, 32]
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(
        ManifestError, match="input 'input' has shape \\[-1, 32\\], the graph has \\[-1, 64\\]"
    ):
        Predictor(tmp_path).load()
    manifest["inputs"][0] = {"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="do not match the ONNX graph"):
        Predictor(tmp_path).load()


def test_model_code_imports_no_web_framework() -> None:
    code = (
        "import sys, modelserver.predictor, modelserver.protocol, modelserver.manifest;"
        "bad = [m for m in ('starlette', 'fastapi', 'uvicorn') if m in sys.modules];"
        "sys.exit(repr(bad) if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2] / "app",
    )
    assert result.returncode == 0, result.stderr
