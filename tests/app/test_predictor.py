"""The predictor: verification at load, the signature check, and inference without any web framework."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from modelserver.errors import InvalidInput, NotReady
from modelserver.predictor import Predictor, Signature
from modelserver.protocol import decode_infer_request
from modelship_contract.manifest import MANIFEST_FILE, Datatype, ManifestError, TensorSpec
from modelship_contract.signature import Check, SignatureError, sign
from training.large_model import inflate


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
            "inputs\\[0\\].name 'x' is not an input of this model: expected 'input' FP32 \\[-1, 64\\]",
        ),
        ({}, "missing input 'input'"),
        ({"input": np.zeros((1, 64), np.float64)}, "input 'input' has datatype 'FP64', expected 'FP32'"),
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
        InvalidInput,
        match=r"outputs\[0\].name 'score' is not an output of this model: expected 'label', 'probabilities'",
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


@pytest.fixture
def signed_model(model_dir: Path, tmp_path: Path, signing_keys) -> Path:
    out = tmp_path / "signed"
    shutil.copytree(model_dir, out)
    sign(out, signing_keys.private_key)
    return out


def test_a_signed_model_is_read_once_at_load(signed_model: Path, signing_keys,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """One pass over the model's bytes serves the signature and the manifest's sha256."""
    from model_signing._hashing import io

    from modelserver import predictor as module

    passes: list[str] = []
    real_hash, real_compute = module.hash_model_file, io.SimpleFileHasher.compute
    monkeypatch.setattr(module, "hash_model_file", lambda fh: passes.append(fh.name) or real_hash(fh))
    monkeypatch.setattr(io.SimpleFileHasher, "compute",
                        lambda self: passes.append(f"model-signing read {self._file}") or real_compute(self))
    loaded = Predictor(signed_model, trust_dir=signing_keys.trusted_dir)
    loaded.load()
    assert passes == [str(signed_model / "model.onnx")]
    assert loaded.signer is not None and loaded.signer.short == signing_keys.short


def test_a_model_changed_with_its_manifest_is_refused_by_the_signature(signed_model: Path,
                                                                        signing_keys) -> None:
    """The manifest's sha256 agrees with the changed file: only the signed digest tells (same pass)."""
    model = signed_model / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    doc = json.loads((signed_model / MANIFEST_FILE).read_text())
    doc["sha256"] = hashlib.sha256(data).hexdigest()
    (signed_model / MANIFEST_FILE).write_text(json.dumps(doc))
    loaded = Predictor(signed_model, trust_dir=signing_keys.trusted_dir)
    refused = r"\(tampered\).*manifest\.json changed; model\.onnx changed"
    with pytest.raises(SignatureError, match=refused) as info:
        loaded.load()
    assert info.value.check is Check.TAMPERED and not loaded.ready


def test_an_unsigned_model_is_refused_before_its_bytes_are_read(model_dir: Path, signing_keys,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from modelserver import predictor as module

    monkeypatch.setattr(module, "hash_model_file", lambda fh: pytest.fail("the model was read"))
    with pytest.raises(SignatureError, match=r"\(unsigned\)"):
        Predictor(model_dir, trust_dir=signing_keys.trusted_dir).load()


def _during_load(monkeypatch: pytest.MonkeyPatch, action) -> None:
    """Run ``action()`` when ONNX Runtime is asked to open the model (after the check), then open it."""
    import onnxruntime

    real = onnxruntime.InferenceSession

    def session(*args, **kwargs):
        action()
        return real(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", session)


@pytest.mark.parametrize("mapped_mib", [0, 2], ids=["inline weights", "a mapped 2 MiB weight"])
def test_a_file_renamed_over_the_model_while_loading_is_refused(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mapped_mib: int
) -> None:
    served = tmp_path / "model"
    if mapped_mib:
        inflate(model_dir, served, mapped_mib)
    else:
        shutil.copytree(model_dir, served)
    model = served / "model.onnx"
    other = tmp_path / "other.onnx"
    other.write_bytes(model.read_bytes())  # the same bytes, even: a different file was not verified
    _during_load(monkeypatch, lambda: other.replace(model))  # a rename, as an attacker would do it

    loaded = Predictor(served)
    with pytest.raises(ManifestError, match="was replaced or written to while it was verified and loaded"):
        loaded.load()
    assert not loaded.ready


def test_a_write_to_the_file_while_loading_refuses_it(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(model_dir, tmp_path, dirs_exist_ok=True)
    model = tmp_path / "model.onnx"

    def append() -> None:
        with open(model, "ab") as fh:
            fh.write(b"\0")

    _during_load(monkeypatch, append)
    with pytest.raises(ManifestError, match="was replaced or written to while it was verified and loaded"):
        Predictor(tmp_path).load()


@pytest.mark.parametrize(("break_it", "message"), [
    (lambda m: m.unlink(), "model.onnx named by manifest.json cannot be opened: No such file or directory"),
    (lambda m: (m.unlink(), m.mkdir()), "model.onnx named by manifest.json cannot be opened: Is a directory"),
])
def test_a_missing_model_file_is_named(model_dir: Path, tmp_path: Path, break_it, message: str) -> None:
    shutil.copytree(model_dir, tmp_path, dirs_exist_ok=True)
    break_it(tmp_path / "model.onnx")
    with pytest.raises(ManifestError, match=message):
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
        "import sys, modelserver.predictor, modelserver.protocol, modelship_contract.manifest,"
        " modelserver.dataplane;"
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


# The signature check on decoded requests (what the server runs), on a tiny 4-feature signature.
SIGNATURE = Signature(
    [TensorSpec("input", Datatype.FP32, (-1, 4))],
    [TensorSpec("label", Datatype.INT64, (-1,)), TensorSpec("probabilities", Datatype.FP32, (-1, 3))],
)


def body(**overrides) -> bytes:
    tensor = {"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4, 5.5, 6, 7, 8]}
    tensor.update(overrides)
    return json.dumps({"inputs": [tensor]}).encode()


def check(raw: bytes) -> list[str]:
    request = decode_infer_request(raw)
    return SIGNATURE.check(request.inputs, request.outputs)


def test_a_request_on_the_signature_passes() -> None:
    assert check(body()) == ["label", "probabilities"]
    raw = json.dumps({"inputs": json.loads(body())["inputs"], "outputs": [{"name": "probabilities"}]})
    assert check(raw.encode()) == ["probabilities"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (body(name="pixels"), r"inputs\[0\].name 'pixels' is not an input of this model: expected 'input'"),
        (body(datatype="FP64"), "input 'input' has datatype 'FP64', expected 'FP32'"),
        (body(shape=[2, 5]), r"has shape \[2, 5\], expected \[-1, 4\]"),
        (body(shape=[8]), r"has shape \[8\], expected \[-1, 4\]"),
        (body(shape=[0, 4], data=[]), "empty batch"),
        (json.dumps({"inputs": json.loads(body())["inputs"] * 2}).encode(), "given twice"),
        (
            json.dumps({"inputs": json.loads(body())["inputs"], "outputs": [{"name": "x"}]}).encode(),
            r"outputs\[0\].name 'x' is not an output of this model: expected 'label', 'probabilities'",
        ),
        (
            json.dumps(
                {"inputs": json.loads(body())["inputs"], "outputs": [{"name": "label"}, {"name": "label"}]}
            ).encode(),
            "output 'label' is requested twice",
        ),
    ],
)
def test_requests_off_the_signature_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check(raw)


def test_the_signature_is_checked_before_the_data_is_decoded() -> None:
    # Wrong datatype and data of another type: the client hears about the datatype it must send.
    with pytest.raises(InvalidInput, match="has datatype 'INT32', expected 'FP32'"):
        check(body(datatype="INT32", data=[0.5] * 8))
    # Wrong shape and too little data: the client hears about the shape.
    with pytest.raises(InvalidInput, match=r"has shape \[1, 2\], expected \[-1, 4\]"):
        check(body(shape=[1, 2]))
