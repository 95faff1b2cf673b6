"""The demo model trainer: deterministic, honest manifest, the known answer for digit 0."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_digits

from modelship_contract.manifest import Datatype, ManifestError, load_model_dir
from training.train_digits import main, train


def test_model_directory_matches_its_manifest(model_dir: Path) -> None:
    manifest = load_model_dir(model_dir)  # verifies size and sha256
    assert (manifest.name, manifest.version, manifest.framework) == ("digits", "1.0.0", "onnx")
    assert [(t.name, t.datatype, t.shape) for t in manifest.inputs] == [("input", Datatype.FP32, (-1, 64))]
    assert [(t.name, t.datatype, t.shape) for t in manifest.outputs] == [
        ("label", Datatype.INT64, (-1,)),
        ("probabilities", Datatype.FP32, (-1, 10)),
    ]
    assert manifest.source_revision == "test"
    assert 0.95 <= manifest.metrics["test_accuracy"] <= 1.0
    assert "scikit-learn" in manifest.trained_with


def test_model_classifies_digits_and_knows_the_smoke_test_zero(model_dir: Path) -> None:
    digits = load_digits()
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    label, proba = session.run(None, {"input": digits.data.astype(np.float32)})
    assert label[0] == 0 and digits.target[0] == 0
    assert (label == digits.target).mean() > 0.95
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-4)


def test_training_is_deterministic(model_dir: Path, tmp_path: Path) -> None:
    again = train(tmp_path, name="digits", version="1.0.0", source_revision="test")
    assert again.sha256 == load_model_dir(model_dir).sha256


def test_cli_writes_sklearn_model_and_mlserver_settings(tmp_path: Path, capsys) -> None:
    rc = main(
        [
            "--out",
            str(tmp_path / "m"),
            "--name",
            "tiny",
            "--version",
            "2.1.0",
            "--source-revision",
            "abc",
            "--sklearn-out",
            str(tmp_path / "sk"),
        ]
    )
    assert rc == 0
    assert capsys.readouterr().out.strip() == "tiny@2.1.0"
    assert load_model_dir(tmp_path / "m").version == "2.1.0"
    settings = json.loads((tmp_path / "sk" / "model-settings.json").read_text())
    assert settings["implementation"] == "mlserver_sklearn.SKLearnModel"
    assert settings["parameters"] == {"uri": "./model.joblib", "version": "2.1.0"}
    assert (tmp_path / "sk" / "model.joblib").stat().st_size > 0


def test_bad_name_is_refused_before_training(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="name 'Bad_Name' is not allowed"):
        train(tmp_path, name="Bad_Name")
    assert main(["--out", str(tmp_path), "--version", "latest"]) == 2


def test_the_golden_set_is_the_same_held_out_rows_every_time(tmp_path) -> None:
    from training.train_digits import write_golden

    first, second = write_golden(tmp_path / "a"), write_golden(tmp_path / "b", version="2")
    assert first.sha256 == second.sha256 and first.rows == 450 and first.features == 64
    assert (tmp_path / "a" / "rows.json").read_bytes() == (tmp_path / "b" / "rows.json").read_bytes()
    assert first.classes == tuple(range(10))
