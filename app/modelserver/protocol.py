"""Open Inference Protocol (KServe V2) JSON <-> numpy translation. No web framework, no model code.

Request::

    {"id": "...", "parameters": {...},
     "inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32", "data": [...]}],
     "outputs": [{"name": "label"}]}

``data`` is row-major, flat or nested to match ``shape``. The response carries each output with
its name, shape, datatype and flat row-major data. Every way a body can be wrong raises
``InvalidInput`` with a message naming the field, what it was and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from .errors import InvalidInput
from .manifest import Datatype, ModelManifest, TensorSpec
from .predictor import NUMPY_DTYPES, shape_text

MAX_ID_LENGTH = 256
_INT_KINDS = frozenset("iu")
_NUMBER_TYPES = frozenset({int, float})
_INT_TYPES = frozenset({int})
_BOOL_TYPES = frozenset({bool})


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[str] | None


def _element_types(data: list, depth: int) -> set[type]:
    """Python types of the leaves of a nested list; stops early at non-list rows (ragged data)."""
    if depth <= 1 or not data or type(data[0]) is not list:
        return set(map(type, data))
    types: set[type] = set()
    for row in data:
        if type(row) is list:
            types |= _element_types(row, depth - 1)
        else:
            types.add(type(row))
    return types


def _decode_tensor(item: Any, index: int, specs: Mapping[str, TensorSpec]) -> tuple[str, np.ndarray]:
    where = f"inputs[{index}]"
    if not isinstance(item, dict):
        raise InvalidInput(f"{where} must be an object with name, shape, datatype and data")
    name = item.get("name")
    if not isinstance(name, str):
        raise InvalidInput(f"{where}.name must be a string, got {name!r}")
    spec = specs.get(name)
    if spec is None:
        allowed = ", ".join(repr(s) for s in specs)
        raise InvalidInput(f"{where}.name {name!r} is not an input of this model: expected {allowed}")
    where = f"input {name!r}"
    datatype = item.get("datatype")
    if datatype != spec.datatype.value:
        raise InvalidInput(f"{where} has datatype {datatype!r}, expected {spec.datatype.value!r}")
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise InvalidInput(f"{where}.shape must be a list of non-negative integers, got {shape!r}")
    if len(shape) != len(spec.shape) or any(
        s != -1 and s != d for s, d in zip(spec.shape, shape, strict=True)
    ):
        raise InvalidInput(
            f"{where} has shape {shape_text(shape)}, expected {shape_text(spec.shape)} (-1 = any size)"
        )
    if shape and shape[0] < 1:
        raise InvalidInput(f"{where} has an empty batch (shape {shape_text(shape)}): send at least one row")
    if "data" not in item:
        raise InvalidInput(f"{where} has no 'data' (binary tensor data is not supported)")
    data = item["data"]
    expected_size = math.prod(shape)
    if type(data) is not list:
        raise InvalidInput(
            f"{where}.data must be a list of {expected_size} numbers, got {type(data).__name__}"
        )
    types = _element_types(data, len(shape))
    if spec.datatype is Datatype.BOOL:
        allowed_types = _BOOL_TYPES
    elif NUMPY_DTYPES[spec.datatype].kind in _INT_KINDS:
        allowed_types = _INT_TYPES
    else:
        allowed_types = _NUMBER_TYPES
    if not types <= allowed_types:
        bad = sorted(t.__name__ for t in types - allowed_types)
        kind = (
            "booleans"
            if allowed_types is _BOOL_TYPES
            else ("integers" if allowed_types is _INT_TYPES else "numbers")
        )
        raise InvalidInput(
            f"{where}.data must hold only {kind} for {spec.datatype.value}, found {', '.join(bad)}"
        )
    dtype = NUMPY_DTYPES[spec.datatype]
    try:
        # A number past the float range (1e39 for FP32) would otherwise become inf and come back as
        # null probabilities with a 200.
        with np.errstate(over="raise"):
            array = np.array(data, dtype=dtype)
    except (OverflowError, FloatingPointError):
        if dtype.kind == "f":
            bounds = f"{np.finfo(dtype).min:g} .. {np.finfo(dtype).max:g}"
        else:
            bounds = f"{np.iinfo(dtype).min} .. {np.iinfo(dtype).max}"
        raise InvalidInput(
            f"{where}.data holds a number outside the {spec.datatype.value} range ({bounds})"
        ) from None
    except (ValueError, TypeError):
        raise InvalidInput(
            f"{where}.data is not a {shape_text(shape)} array of {spec.datatype.value} (ragged rows?)"
        ) from None
    if array.shape != tuple(shape):
        if array.size != expected_size:
            raise InvalidInput(
                f"{where}.data has {array.size} elements, but shape {shape_text(shape)} needs {expected_size}"
            )
        if array.ndim != 1:
            raise InvalidInput(
                f"{where}.data is nested as {shape_text(array.shape)}; send it flat or nested as "
                f"{shape_text(shape)}"
            )
        array = array.reshape(shape)
    return name, array


def parse_infer_request(
    body: bytes, specs: Mapping[str, TensorSpec], output_names: Mapping[str, Any]
) -> InferRequest:
    """Decode an infer request body against the model's input signature."""
    if not body:
        raise InvalidInput("the request body is empty: send a JSON inference request with 'inputs'")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidInput(f"the request body must be a JSON object, got {type(payload).__name__}")
    request_id = payload.get("id")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > MAX_ID_LENGTH):
        raise InvalidInput(f"'id' must be a string of at most {MAX_ID_LENGTH} characters")
    if "parameters" in payload and not isinstance(payload["parameters"], dict):
        raise InvalidInput("'parameters' must be an object")
    raw_inputs = payload.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    inputs: dict[str, np.ndarray] = {}
    for index, item in enumerate(raw_inputs):
        name, array = _decode_tensor(item, index, specs)
        if name in inputs:
            raise InvalidInput(f"input {name!r} is given twice")
        inputs[name] = array
    missing = [n for n in specs if n not in inputs]
    if missing:
        raise InvalidInput(f"missing input {missing[0]!r}")
    outputs = None
    raw_outputs = payload.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InvalidInput("'outputs' must be a list of {\"name\": ...} objects")
        outputs = []
        for index, item in enumerate(raw_outputs):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str) or name not in output_names:
                allowed = ", ".join(repr(n) for n in output_names)
                raise InvalidInput(
                    f"outputs[{index}].name {name!r} is not an output of this model: expected {allowed}"
                )
            if name in outputs:
                raise InvalidInput(f"output {name!r} is requested twice")
            outputs.append(name)
    return InferRequest(id=request_id, inputs=inputs, outputs=outputs)


def encode_infer_response(
    manifest: ModelManifest, request_id: str | None, results: Mapping[str, np.ndarray]
) -> bytes:
    """The V2 infer response, with each output flattened row-major."""
    datatypes = {t.name: t.datatype.value for t in manifest.outputs}
    outputs = [
        {"name": name, "datatype": datatypes[name], "shape": list(array.shape), "data": array.ravel()}
        for name, array in results.items()
    ]
    response: dict[str, Any] = {"model_name": manifest.name, "model_version": manifest.version}
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = outputs
    return orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)


def model_metadata(manifest: ModelManifest) -> dict[str, Any]:
    """The V2 model metadata response; ``parameters`` stays flat (protocol values are scalars)."""
    return {
        "name": manifest.name,
        "versions": [manifest.version],
        "platform": "onnxruntime_onnx",
        "inputs": [t.to_dict() for t in manifest.inputs],
        "outputs": [t.to_dict() for t in manifest.outputs],
        "parameters": {
            "sha256": manifest.sha256,
            "created_at": manifest.created_at,
            "source_revision": manifest.source_revision,
            **{f"metrics.{key}": value for key, value in manifest.metrics.items()},
        },
    }


def error_body(message: str) -> bytes:
    """The V2 error response: ``{"error": "<message>"}``."""
    return orjson.dumps({"error": message})
