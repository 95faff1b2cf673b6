"""Loading the model and running it: ONNX Runtime behind the manifest's signature. No web framework here.

``Predictor.load`` verifies the model file against the manifest (size and sha256), opens an ONNX
Runtime session and checks that the graph's inputs and outputs are the ones the manifest declares,
so a manifest that lies about its model is caught at start rather than at the first request.
``Predictor.predict`` takes numpy arrays already translated from the wire format, checks them
against the signature and returns the requested outputs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .errors import InvalidInput, NotReady
from .manifest import Datatype, ManifestError, ModelManifest, TensorSpec, load_model_dir

NUMPY_DTYPES: dict[Datatype, np.dtype] = {
    Datatype.BOOL: np.dtype(np.bool_),
    Datatype.UINT8: np.dtype(np.uint8),
    Datatype.UINT16: np.dtype(np.uint16),
    Datatype.UINT32: np.dtype(np.uint32),
    Datatype.UINT64: np.dtype(np.uint64),
    Datatype.INT8: np.dtype(np.int8),
    Datatype.INT16: np.dtype(np.int16),
    Datatype.INT32: np.dtype(np.int32),
    Datatype.INT64: np.dtype(np.int64),
    Datatype.FP16: np.dtype(np.float16),
    Datatype.FP32: np.dtype(np.float32),
    Datatype.FP64: np.dtype(np.float64),
}
"""Wire datatype -> numpy dtype (BYTES has no fixed-size numpy equivalent and is not served)."""

_ONNX_TYPES: dict[str, Datatype] = {
    "tensor(bool)": Datatype.BOOL,
    "tensor(uint8)": Datatype.UINT8,
    "tensor(uint16)": Datatype.UINT16,
    "tensor(uint32)": Datatype.UINT32,
    "tensor(uint64)": Datatype.UINT64,
    "tensor(int8)": Datatype.INT8,
    "tensor(int16)": Datatype.INT16,
    "tensor(int32)": Datatype.INT32,
    "tensor(int64)": Datatype.INT64,
    "tensor(float16)": Datatype.FP16,
    "tensor(float)": Datatype.FP32,
    "tensor(double)": Datatype.FP64,
    "tensor(string)": Datatype.BYTES,
}


def shape_text(shape: Sequence[int]) -> str:
    """``[-1, 64]`` rendered for messages, with -1 shown as ``-1`` (any size)."""
    return "[" + ", ".join(str(d) for d in shape) + "]"


def shape_matches(spec: Sequence[int], shape: Sequence[int]) -> bool:
    return len(spec) == len(shape) and all(s == -1 or s == d for s, d in zip(spec, shape, strict=True))


def _onnx_shape(shape: Sequence[object]) -> tuple[int, ...]:
    # ONNX reports symbolic or unknown dimensions as strings or None: both mean "any size".
    return tuple(d if isinstance(d, int) and d > 0 else -1 for d in shape)


class Predictor:
    """One model, loaded once per process; ``predict`` is safe to call from several threads."""

    def __init__(self, model_dir: Path | str, intra_op_threads: int = 1) -> None:
        self.model_dir = Path(model_dir)
        self.intra_op_threads = intra_op_threads
        self.manifest: ModelManifest | None = None
        self.load_seconds: float | None = None
        self._session = None
        self._inputs: dict[str, TensorSpec] = {}
        self._outputs: dict[str, TensorSpec] = {}
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._session is not None

    def load(self) -> ModelManifest:
        """Verify the model directory and open the session. Raises ``ManifestError`` on any mismatch."""
        import onnxruntime as ort

        with self._lock:
            if self._session is not None:
                assert self.manifest is not None
                return self.manifest
            start = time.perf_counter()
            manifest = load_model_dir(self.model_dir)
            if manifest.framework != "onnx":
                raise ManifestError(f"framework {manifest.framework!r} is not served: only 'onnx'")
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.intra_op_threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # Read the bytes we just hashed, so the session runs exactly the verified file.
            model_bytes = (self.model_dir / manifest.model_file).read_bytes()
            try:
                session = ort.InferenceSession(
                    model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime raises its own exception types
                raise ManifestError(f"{manifest.model_file} is not a loadable ONNX model: {exc}") from None
            self._check_signature(manifest, session)
            self._inputs = {t.name: t for t in manifest.inputs}
            self._outputs = {t.name: t for t in manifest.outputs}
            self.manifest = manifest
            self._session = session
            self.load_seconds = time.perf_counter() - start
            return manifest

    @staticmethod
    def _check_signature(manifest: ModelManifest, session) -> None:
        for kind, declared, actual in (
            ("input", manifest.inputs, session.get_inputs()),
            ("output", manifest.outputs, session.get_outputs()),
        ):
            graph = {a.name: a for a in actual}
            names = [d.name for d in declared]
            if sorted(names) != sorted(graph):
                raise ManifestError(f"manifest {kind}s {names} do not match the ONNX graph's {sorted(graph)}")
            for spec in declared:
                node = graph[spec.name]
                dtype = _ONNX_TYPES.get(node.type)
                if dtype != spec.datatype:
                    raise ManifestError(
                        f"manifest says {kind} {spec.name!r} is {spec.datatype.value}, "
                        f"the graph has {node.type}"
                    )
                onnx_shape = _onnx_shape(node.shape)
                if len(onnx_shape) != len(spec.shape) or any(
                    o != -1 and o != s for o, s in zip(onnx_shape, spec.shape, strict=True)
                ):
                    raise ManifestError(
                        f"manifest says {kind} {spec.name!r} has shape {shape_text(spec.shape)}, "
                        f"the graph has {shape_text(onnx_shape)}"
                    )

    @property
    def inputs(self) -> Mapping[str, TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> Mapping[str, TensorSpec]:
        return self._outputs

    def validate(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Check names, dtypes, shapes and a consistent batch size; the message says what was expected."""
        expected = self._inputs
        unknown = [n for n in inputs if n not in expected]
        if unknown:
            raise InvalidInput(
                f"unknown input {unknown[0]!r}: the model takes {self._signature_text(expected)}"
            )
        missing = [n for n in expected if n not in inputs]
        if missing:
            raise InvalidInput(
                f"missing input {missing[0]!r}: the model takes {self._signature_text(expected)}"
            )
        batch = None
        for name, array in inputs.items():
            spec = expected[name]
            if array.dtype != NUMPY_DTYPES.get(spec.datatype):
                raise InvalidInput(f"input {name!r} must be {spec.datatype.value}, got {array.dtype}")
            if not shape_matches(spec.shape, array.shape):
                raise InvalidInput(
                    f"input {name!r} has shape {shape_text(array.shape)}, "
                    f"expected {shape_text(spec.shape)} (-1 = any size)"
                )
            if array.ndim and array.shape[0] < 1:
                raise InvalidInput(f"input {name!r} has an empty batch: send at least one row")
            if batch is None:
                batch = array.shape[0] if array.ndim else None
            elif array.ndim and array.shape[0] != batch:
                raise InvalidInput(f"inputs disagree on the batch size: {batch} vs {array.shape[0]}")

    def predict(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run the model on validated inputs; return the requested outputs (all by default)."""
        session = self._session
        if session is None:
            raise NotReady("the model is not loaded yet")
        names = list(self._outputs) if not outputs else list(outputs)
        for name in names:
            if name not in self._outputs:
                raise InvalidInput(
                    f"unknown output {name!r}: the model produces {', '.join(map(repr, self._outputs))}"
                )
        self.validate(inputs)
        results = session.run(names, dict(inputs))
        return dict(zip(names, results, strict=True))

    @staticmethod
    def _signature_text(specs: Mapping[str, TensorSpec]) -> str:
        return ", ".join(f"{s.name!r} {s.datatype.value} {shape_text(s.shape)}" for s in specs.values())
