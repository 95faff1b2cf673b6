"""The data plane: model lookup, readiness with the reason a load failed, and inference without HTTP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import pytest
from sklearn.datasets import load_digits

from modelserver.dataplane import DataPlane
from modelserver.errors import InvalidInput, ModelNotFound, NotReady
from modelserver.metrics import Metrics
from modelserver.predictor import Predictor
from modelship_contract.manifest import MANIFEST_FILE, sha256_file


def infer_body(rows: int) -> bytes:
    data = load_digits().data[:rows].ravel().tolist()
    return json.dumps({"id": "r", "inputs": [
        {"name": "input", "shape": [rows, 64], "datatype": "FP32", "data": data}]}).encode()


def test_lookup_names_what_is_served(model_dir: Path) -> None:
    plane = DataPlane(Predictor(model_dir), Metrics())
    assert plane.model("digits").version == "1.0.0"
    assert plane.model("digits", "1.0.0").name == "digits"
    with pytest.raises(ModelNotFound, match="model 'cats' is not served here; this server serves 'digits'"):
        plane.model("cats")
    served = r"version '2' of model 'digits' is not served here; available: '1\.0\.0'"
    with pytest.raises(ModelNotFound, match=served):
        plane.model("digits", "2")


def test_infer_answers_once_loaded_and_counts_rows(model_dir: Path) -> None:
    plane = DataPlane(Predictor(model_dir), Metrics())
    assert plane.model_metadata("digits")["versions"] == ["1.0.0"]  # answers before the model loads
    with pytest.raises(NotReady, match="still loading"):
        plane.model("digits", loaded=True)
    plane.load()
    assert plane.ready
    response = orjson.loads(plane.infer(plane.model("digits", loaded=True), infer_body(3)))
    assert response["id"] == "r" and [o["shape"] for o in response["outputs"]] == [[3], [3, 10]]
    assert "modelship_inference_rows_total 3.0" in plane.metrics.exposition().decode()
    with pytest.raises(InvalidInput, match="expected 'FP32'"):
        plane.infer(plane.manifest, infer_body(1).replace(b'"FP32"', b'"FP64"'))


def test_a_failed_load_is_kept_and_returned_with_every_refusal(model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    (broken / "model.onnx").write_bytes(b"not an onnx graph")
    manifest = json.loads((broken / MANIFEST_FILE).read_text())
    manifest.update(sha256=sha256_file(broken / "model.onnx"), size=len(b"not an onnx graph"))
    (broken / MANIFEST_FILE).write_text(json.dumps(manifest))

    plane = DataPlane(Predictor(broken), Metrics())
    plane.load()  # logged and kept, not raised: the process stays live
    assert not plane.ready
    with pytest.raises(NotReady, match="not a loadable ONNX model"):
        plane.model("digits", loaded=True)
