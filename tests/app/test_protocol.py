"""Open Inference Protocol translation: request JSON -> numpy, numpy -> response JSON, and every refusal.

Whether a well-formed request fits the model (names, datatypes, shapes, outputs) is the predictor's
check: those refusals are in test_predictor.py.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import orjson
import pytest

from modelserver.errors import InvalidInput
from modelserver.protocol import decode_infer_request, encode_infer_response, model_metadata
from modelship_contract.manifest import Datatype, ModelManifest, TensorSpec

SPECS = {"input": TensorSpec("input", Datatype.FP32, (-1, 4))}
OUTPUTS = {
    "label": TensorSpec("label", Datatype.INT64, (-1,)),
    "probabilities": TensorSpec("probabilities", Datatype.FP32, (-1, 3)),
}
MANIFEST = ModelManifest(
    name="tiny",
    version="1.0.0",
    model_file="model.onnx",
    sha256="0" * 64,
    size=1,
    framework="onnx",
    inputs=tuple(SPECS.values()),
    outputs=tuple(OUTPUTS.values()),
    created_at="2026-01-01T00:00:00Z",
    source_revision="abc",
)


def body(**overrides) -> bytes:
    tensor = {"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4, 5.5, 6, 7, 8]}
    tensor.update(overrides)
    return json.dumps({"inputs": [tensor]}).encode()


def parse(raw: bytes) -> SimpleNamespace:
    """Decode a body and its tensors' data, as the data plane does around the predictor's check."""
    request = decode_infer_request(raw)
    inputs = {tensor.name: tensor.array() for tensor in request.inputs}
    return SimpleNamespace(id=request.id, inputs=inputs, outputs=request.outputs)


def test_flat_and_nested_data_give_the_same_array() -> None:
    flat = parse(body())
    nested = parse(body(data=[[1, 2, 3, 4], [5.5, 6, 7, 8]]))
    assert flat.inputs["input"].dtype == np.float32
    np.testing.assert_array_equal(flat.inputs["input"], nested.inputs["input"])
    assert flat.inputs["input"].shape == (2, 4)
    assert flat.outputs is None and flat.id is None


def test_id_and_requested_outputs_are_kept() -> None:
    raw = json.dumps({"id": "r-1", "inputs": json.loads(body())["inputs"], "outputs": [{"name": "label"}]})
    parsed = parse(raw.encode())
    assert parsed.id == "r-1" and parsed.outputs == ["label"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "the request body is empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'{"inputs": []}', "'inputs' must be a non-empty list"),
        (b'{"inputs": [1]}', r"inputs\[0\] must be an object"),
        (b'{"id": 5, "inputs": []}', "'id' must be a string"),
        (body(shape=[2, -4]), "shape must be a list of non-negative integers"),
        (body(shape=[3, 4]), r"data has 8 elements, but shape \[3, 4\] needs 12"),
        (body(data=[1, 2, "3", 4, 5, 6, 7, 8]), "data must hold only numbers for FP32, found str"),
        (body(data=[1, 2, True, 4, 5, 6, 7, 8]), "found bool"),
        (body(data=[1, 2, None, 4, 5, 6, 7, 8]), "found NoneType"),
        (body(data=[[1, 2, 3, 4], [5, 6, 7]]), "ragged rows"),
        (body(data=[[[1, 2, 3, 4], [5, 6, 7, 8]]]), "found list"),
        (body(data={"a": 1}), "data must be a list of 8 numbers, got dict"),
        (body(data=[10**400] * 8), "not valid JSON: number is infinity"),
        (
            body(data=[1e39] * 8),
            r"data holds a number outside the FP32 range \(-3.40282e\+38 .. 3.40282e\+38\)",
        ),
        (body(data=[10**40] + [0] * 7), "outside the FP32 range"),
        (body(data=None), "data must be a list"),
        (
            json.dumps({"inputs": json.loads(body())["inputs"], "outputs": "label"}).encode(),
            "'outputs' must be a list",
        ),
        (
            json.dumps({"inputs": json.loads(body())["inputs"], "parameters": []}).encode(),
            "'parameters' must be",
        ),
    ],
)
def test_malformed_requests_say_what_is_expected(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse(raw)


def test_integers_outside_an_integer_datatype_are_refused() -> None:
    raw = json.dumps({"inputs": [{"name": "counts", "shape": [2], "datatype": "INT8", "data": [1, 300]}]})
    with pytest.raises(
        InvalidInput, match=r"input 'counts'.data holds a number outside the INT8 range \(-128 .. 127\)"
    ):
        parse(raw.encode())


def test_response_is_flat_row_major_with_shapes() -> None:
    results = {
        "label": np.array([1, 2], np.int64),
        "probabilities": np.arange(6, dtype=np.float32).reshape(2, 3),
    }
    decoded = orjson.loads(encode_infer_response(MANIFEST, "r-1", results))
    assert decoded == {
        "model_name": "tiny",
        "model_version": "1.0.0",
        "id": "r-1",
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [2], "data": [1, 2]},
            {
                "name": "probabilities",
                "datatype": "FP32",
                "shape": [2, 3],
                "data": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            },
        ],
    }
    assert "id" not in orjson.loads(encode_infer_response(MANIFEST, None, results))


def test_model_metadata_lists_version_and_signature() -> None:
    meta = model_metadata(MANIFEST)
    assert meta["name"] == "tiny" and meta["versions"] == ["1.0.0"] and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]


def test_model_metadata_parameters_are_scalars() -> None:
    manifest = ModelManifest(**{**MANIFEST.__dict__, "metrics": {"test_accuracy": 0.97}})
    parameters = model_metadata(manifest)["parameters"]
    assert parameters["sha256"] == "0" * 64 and parameters["metrics.test_accuracy"] == 0.97
    assert all(isinstance(v, (str, int, float, bool)) for v in parameters.values())
