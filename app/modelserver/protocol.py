"""Open Inference Protocol (KServe V2) JSON <-> numpy translation. No web framework, no model code.

Request::

    {"id": "...", "parameters": {...},
     "inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32", "data": [...]}],
     "outputs": [{"name": "label"}]}

``data`` is row-major, flat or nested to match ``shape``. The response carries each output with
its name, shape, datatype and flat row-major data. Every way a body can be malformed raises
``InvalidInput`` with a message naming the field, what it was and what is allowed. Whether a
well-formed request fits the model is not checked here but by the predictor, which owns the
signature; ``RequestTensor.array`` turns the data into numpy once that check has passed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelship_contract.manifest import Datatype, ModelManifest

from .errors import InvalidInput
from .tensors import NUMPY_DTYPES, shape_text

MAX_ID_LENGTH = 256
_INT_KINDS = frozenset("iu")
_NUMBER_TYPES = frozenset({int, float})
_INT_TYPES = frozenset({int})
_BOOL_TYPES = frozenset({bool})
_SERVED = ", ".join(repr(d.value) for d in NUMPY_DTYPES)


@dataclass(frozen=True, slots=True)
class RequestTensor:
    """One entry of ``inputs`` as sent: its form is checked, its data is still JSON.

    Whether it fits the model (name, datatype, shape) is the predictor's check, made before
    ``array()`` turns the data into numpy.
    """

    index: int
    """Position in ``inputs`` (for messages)."""
    name: str
    datatype: object
    """The ``datatype`` field as sent (any JSON value; the predictor compares it with the model's)."""
    shape: tuple[int, ...]
    data: list

    def array(self) -> np.ndarray:
        """``data`` as a numpy array of ``datatype`` and ``shape``; every way it does not fit says so."""
        where = f"input {self.name!r}"
        try:
            datatype = Datatype(self.datatype)
            dtype = NUMPY_DTYPES[datatype]
        except (ValueError, KeyError):
            raise InvalidInput(
                f"{where} has datatype {self.datatype!r}, which is not served (allowed: {_SERVED})"
            ) from None
        shape = self.shape
        data = self.data
        types = _element_types(data, len(shape))
        if datatype is Datatype.BOOL:
            allowed_types = _BOOL_TYPES
        elif dtype.kind in _INT_KINDS:
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
                f"{where}.data must hold only {kind} for {datatype.value}, found {', '.join(bad)}"
            )
        try:
            # A number past the float range (1e39 for FP32) would otherwise become inf and come back
            # as null probabilities with a 200.
            with np.errstate(over="raise"):
                array = np.array(data, dtype=dtype)
        except (OverflowError, FloatingPointError):
            if dtype.kind == "f":
                bounds = f"{np.finfo(dtype).min:g} .. {np.finfo(dtype).max:g}"
            else:
                bounds = f"{np.iinfo(dtype).min} .. {np.iinfo(dtype).max}"
            raise InvalidInput(
                f"{where}.data holds a number outside the {datatype.value} range ({bounds})"
            ) from None
        except (ValueError, TypeError):
            raise InvalidInput(
                f"{where}.data is not a {shape_text(shape)} array of {datatype.value} (ragged rows?)"
            ) from None
        if array.shape != shape:
            expected_size = math.prod(shape)
            if array.size != expected_size:
                raise InvalidInput(
                    f"{where}.data has {array.size} elements, but shape {shape_text(shape)} needs "
                    f"{expected_size}"
                )
            if array.ndim != 1:
                raise InvalidInput(
                    f"{where}.data is nested as {shape_text(array.shape)}; send it flat or nested as "
                    f"{shape_text(shape)}"
                )
            array = array.reshape(shape)
        return array


@dataclass(frozen=True, slots=True)
class InferRequest:
    id: str | None
    inputs: tuple[RequestTensor, ...]
    outputs: list[str] | None
    """Requested output names in order, or None for all."""


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


def _decode_tensor(item: Any, index: int) -> RequestTensor:
    where = f"inputs[{index}]"
    if not isinstance(item, dict):
        raise InvalidInput(f"{where} must be an object with name, shape, datatype and data")
    name = item.get("name")
    if not isinstance(name, str):
        raise InvalidInput(f"{where}.name must be a string, got {name!r}")
    where = f"input {name!r}"
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise InvalidInput(f"{where}.shape must be a list of non-negative integers, got {shape!r}")
    if "data" not in item:
        raise InvalidInput(f"{where} has no 'data' (binary tensor data is not supported)")
    data = item["data"]
    if type(data) is not list:
        raise InvalidInput(
            f"{where}.data must be a list of {math.prod(shape)} numbers, got {type(data).__name__}"
        )
    return RequestTensor(index, name, item.get("datatype"), tuple(shape), data)


def decode_infer_request(body: bytes) -> InferRequest:
    """Decode an infer request body. The form only: the model's signature is the predictor's check."""
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
    inputs = tuple(_decode_tensor(item, index) for index, item in enumerate(raw_inputs))
    outputs = None
    raw_outputs = payload.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InvalidInput("'outputs' must be a list of {\"name\": ...} objects")
        names = []
        for index, item in enumerate(raw_outputs):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str):
                raise InvalidInput(f"outputs[{index}] must be an object with a string 'name', got {item!r}")
            names.append(name)
        outputs = names
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
