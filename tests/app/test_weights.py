"""Mapping an ONNX file's weights: the rewritten model answers exactly like the file, which is unchanged."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from modelserver.predictor import Predictor
from modelserver.weights import WeightsError, map_weights, session_config
from modelship_contract.manifest import ManifestError
from training.large_model import inflate


@pytest.fixture(scope="module")
def model_4mib(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("weights") / "model"
    inflate(model_dir, out, 4, version="1.0.0")
    return out


def _session(model: bytes | str, config: dict[str, str] | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def test_large_weights_become_references_into_the_same_file(model_4mib: Path) -> None:
    path = model_4mib / "model.onnx"
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    mapped = map_weights(path)
    assert mapped.tensors == 1 and mapped.mapped == 4 * 1024 * 1024
    assert len(mapped.model) < 64 * 1024  # the weight's bytes are not in it
    model = onnx.load_from_string(mapped.model)
    weight = next(t for t in model.graph.initializer if t.name == "large_weight")
    assert weight.data_location == onnx.TensorProto.EXTERNAL and not weight.raw_data
    entries = {e.key: e.value for e in weight.external_data}
    assert entries["location"] == "model.onnx" and entries["length"] == str(4 * 1024 * 1024)
    # The reference points at the weight's own bytes in the file.
    original = onnx.load(str(path))
    raw = next(t for t in original.graph.initializer if t.name == "large_weight").raw_data
    with open(path, "rb") as f:
        f.seek(int(entries["offset"]))
        assert f.read(len(raw)) == raw
    # Small weights (the classifier's own) stay inline; the file is untouched.
    assert all(t.raw_data for t in model.graph.initializer if t.name != "large_weight")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_the_mapped_model_answers_exactly_like_the_file(model_4mib: Path) -> None:
    path = model_4mib / "model.onnx"
    rows = {"input": (np.arange(8 * 64, dtype=np.float32).reshape(8, 64) % 17)}
    by_path = _session(str(path)).run(None, rows)
    mapped = _session(map_weights(path).model, session_config(path)).run(None, rows)
    assert all(np.array_equal(a, b) for a, b in zip(by_path, mapped, strict=True))


@pytest.mark.parametrize("cut", [7, 1000, -100])
def test_a_truncated_file_is_refused_naming_the_problem(model_4mib: Path, tmp_path: Path, cut: int) -> None:
    data = (model_4mib / "model.onnx").read_bytes()
    broken = tmp_path / "model.onnx"
    broken.write_bytes(data[:cut])
    with pytest.raises(WeightsError, match=r"truncated|malformed|runs past|wire type"):
        map_weights(broken)


def test_a_file_that_is_not_onnx_fails_the_load_as_a_manifest_error(model_dir: Path, tmp_path: Path) -> None:
    from modelship_contract.manifest import MANIFEST_FILE, read_manifest, sha256_file

    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    (broken / "model.onnx").write_bytes(b"\x0f" * 64)  # wire type 7: not a protobuf
    manifest = read_manifest(broken)
    text = (broken / MANIFEST_FILE).read_text()
    text = text.replace(manifest.sha256, sha256_file(broken / "model.onnx")).replace(
        f'"size": {manifest.size}', '"size": 64')
    (broken / MANIFEST_FILE).write_text(text)
    with pytest.raises(ManifestError, match=r"model\.onnx is not a loadable ONNX model: unsupported"):
        Predictor(broken).load()
