"""Loading the model and running it: ONNX Runtime behind the manifest's signature. No web framework here.

``Predictor.load`` verifies the model file against the manifest (size and sha256), opens an ONNX
Runtime session and checks that the graph's inputs and outputs are the ones the manifest declares,
so a manifest that lies about its model is caught at start rather than at the first request.
The predictor owns the model's signature: ``Signature.check`` is the one place a request's input
names, datatypes, shapes, batch size and requested outputs are checked. ``Predictor.infer`` takes
tensors whose data is turned into numpy only after that check (the protocol's decoded request);
``Predictor.predict`` takes numpy arrays (in-process callers) and runs the same check.

Memory: the weights are mapped from the verified file (``weights``), so the process holds them
once, in the page cache, shared with its forked workers. What one request may allocate (its
intermediate tensors) comes from an ONNX Runtime arena capped at ``request_memory_mib`` and
returned to the system after every run: a request that would need more is refused
(``RequestMemoryExceeded``, 413) instead of growing the process until the kernel kills it, and an
idle worker goes back to holding no request memory at all.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from modelship_contract.manifest import (
    MANIFEST_FILE,
    ONNX_TYPES,
    ManifestError,
    ModelManifest,
    TensorSpec,
    check_model_digest,
    hash_model_file,
    read_manifest_bytes,
)
from modelship_contract.signature import Signer, open_signature

from .errors import InvalidInput, NotReady, RequestMemoryExceeded
from .settings import REQUEST_MEMORY_MIB, Settings
from .tensors import datatype_name, shape_matches, shape_text
from .weights import WeightsError, map_weights, session_config

_MIB = 1024 * 1024
_ARENA_FULL = "BFCArena"
"""ONNX Runtime's message when the capped arena cannot serve an allocation (``bfc_arena.cc``)."""
_arena_mib: int | None = None
"""The request-memory cap of this process's ONNX Runtime arena, once registered."""


def _return_large_blocks() -> None:
    """Serve allocations of 1 MiB or more from their own mappings, given back to the system when freed.

    glibc otherwise raises its mmap threshold to the largest block freed (up to 32 MiB) and keeps
    later blocks below it in the heap once freed: measured, the 256 MiB model's three processes held
    87 MiB of anonymous memory after ten 50-row requests per worker, 31 MiB with the threshold fixed.
    Process-wide, inherited by the forked workers; a no-op without glibc.
    """
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_mmap_threshold = -3  # <malloc.h>; setting it also turns off glibc's dynamic threshold
    libc.mallopt(m_mmap_threshold, 1024 * 1024)


def _use_request_arena(mib: int) -> None:
    """Make ONNX Runtime's CPU arena of this process hold at most ``mib`` MiB (process-wide).

    Sessions opt in with ``session.use_env_allocators``. Registering again replaces the arena, so the
    last predictor loaded in a process sets the cap (one per server process).
    """
    global _arena_mib
    import onnxruntime as ort

    if _arena_mib == mib:
        return
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    # kSameAsRequested (1): grow by what a run asks, no doubling past the cap.
    config = ort.OrtArenaCfg({"max_mem": mib * _MIB, "arena_extend_strategy": 1})
    ort.create_and_register_allocator(info, config)
    _arena_mib = mib



def _open_model_file(path: Path) -> BinaryIO:
    """The model file, opened for reading; ``ManifestError`` naming it if it is missing or not a file."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - the caller's ``with`` closes it
    except OSError as exc:
        raise ManifestError(f"{path} named by {MANIFEST_FILE} cannot be opened: {exc.strerror or exc}") \
            from None
    if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
        fh.close()
        raise ManifestError(f"{path} named by {MANIFEST_FILE} does not exist or is not a file")
    return fh


def _identity(fh: BinaryIO) -> tuple[int, ...]:
    """The open file's device and inode, and what a write to it changes: its size and mtime."""
    st = os.fstat(fh.fileno())
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _path_identity(path: Path) -> tuple[int, ...]:
    """Device and inode of the file ``path`` names now (empty if it names none)."""
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return st.st_dev, st.st_ino


def _onnx_shape(shape: Sequence[object]) -> tuple[int, ...]:
    # ONNX reports symbolic or unknown dimensions as strings or None: both mean "any size".
    return tuple(d if isinstance(d, int) and d > 0 else -1 for d in shape)


class Tensor(Protocol):
    """An input as the predictor sees it: a header to check, and its data as numpy on demand."""

    @property
    def index(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def datatype(self) -> object: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    def array(self) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class ArrayTensor:
    """A numpy array as a ``Tensor`` (for in-process callers)."""

    index: int
    name: str
    value: np.ndarray

    @property
    def datatype(self) -> str:
        return datatype_name(self.value.dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    def array(self) -> np.ndarray:
        return self.value


class Signature:
    """The model's declared inputs and outputs, and the one check every request passes."""

    def __init__(self, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> None:
        self.inputs: dict[str, TensorSpec] = {t.name: t for t in inputs}
        self.outputs: dict[str, TensorSpec] = {t.name: t for t in outputs}
        self._inputs_text = ", ".join(
            f"{s.name!r} {s.datatype.value} {shape_text(s.shape)}" for s in self.inputs.values()
        )
        self._outputs_text = ", ".join(map(repr, self.outputs))

    def check(self, tensors: Sequence[Tensor], outputs: Sequence[str] | None = None) -> list[str]:
        """Raise ``InvalidInput`` naming the first mismatch; return the output names to compute."""
        seen: set[str] = set()
        batch: int | None = None
        for tensor in tensors:
            name = tensor.name
            spec = self.inputs.get(name)
            if spec is None:
                raise InvalidInput(
                    f"inputs[{tensor.index}].name {name!r} is not an input of this model: "
                    f"expected {self._inputs_text}"
                )
            if name in seen:
                raise InvalidInput(f"input {name!r} is given twice")
            seen.add(name)
            if tensor.datatype != spec.datatype.value:
                raise InvalidInput(
                    f"input {name!r} has datatype {tensor.datatype!r}, expected {spec.datatype.value!r}"
                )
            shape = tensor.shape
            if not shape_matches(spec.shape, shape):
                raise InvalidInput(
                    f"input {name!r} has shape {shape_text(shape)}, expected {shape_text(spec.shape)} "
                    "(-1 = any size)"
                )
            if shape:
                if shape[0] < 1:
                    raise InvalidInput(f"input {name!r} has an empty batch (shape {shape_text(shape)}): "
                                       "send at least one row")
                if batch is None:
                    batch = shape[0]
                elif shape[0] != batch:
                    raise InvalidInput(f"inputs disagree on the batch size: {batch} vs {shape[0]}")
        if len(seen) != len(self.inputs):
            missing = next(n for n in self.inputs if n not in seen)
            raise InvalidInput(f"missing input {missing!r}: the model takes {self._inputs_text}")
        if not outputs:
            return list(self.outputs)
        names: list[str] = []
        for index, name in enumerate(outputs):
            if name not in self.outputs:
                raise InvalidInput(
                    f"outputs[{index}].name {name!r} is not an output of this model: "
                    f"expected {self._outputs_text}"
                )
            if name in names:
                raise InvalidInput(f"output {name!r} is requested twice")
            names.append(name)
        return names


class Predictor:
    """One model, loaded once per process; ``predict`` is safe to call from several threads."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Predictor:
        """The predictor the server's settings describe (model, threads, request memory, trusted keys)."""
        return cls(settings.model_dir, settings.intra_op_threads, settings.request_memory_mib,
                   trust_dir=settings.trust_dir)

    def __init__(self, model_dir: Path | str, intra_op_threads: int = 1,
                 request_memory_mib: int = REQUEST_MEMORY_MIB, trust_dir: Path | str | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.trust_dir = Path(trust_dir) if trust_dir is not None else None
        """Public keys the model must be signed by (``MODELSHIP_TRUST_DIR``); None: not checked."""
        self.signer: Signer | None = None
        """Who signed the loaded model (set at load when ``trust_dir`` is set)."""
        self.intra_op_threads = intra_op_threads
        self.request_memory_mib = request_memory_mib
        """Cap on what one inference may allocate (intermediate tensors), in MiB."""
        self._run_options = None
        self.manifest: ModelManifest | None = None
        self.load_seconds: float | None = None
        self._session = None
        self.signature = Signature((), ())
        """Set from the manifest at load."""
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._session is not None

    def load(self) -> ModelManifest:
        """Verify the model directory and open the session on the very file verified.

        One read of the model's bytes serves every check: the file is opened once and hashed once
        through that descriptor; that sha256 is both what the manifest must say and, with
        ``trust_dir``, the digest model-signing compares with the signed one (the signature itself
        is checked first, before any model byte is read; ``manifest.json`` is hashed from the bytes
        parsed). Raises ``SignatureError`` naming the failed signature check, then ``ManifestError``
        on any other mismatch. ONNX Runtime then maps the weights from the path (it resolves
        external data paths itself, so it cannot be handed the descriptor). The load is kept only if
        the path still names the very file checked and that file was not written to (same device
        and inode, size and mtime) once the session exists: a file renamed in or written to
        meanwhile refuses the load. Not from the file's bytes read into memory: ONNX Runtime keeps
        the bytes it is given for the session's life (``benchmarks/README.md``, "Model load memory").
        """
        with self._lock:
            if self._session is not None:
                assert self.manifest is not None
                return self.manifest
            start = time.perf_counter()
            signed = open_signature(self.model_dir, self.trust_dir) if self.trust_dir is not None else None
            manifest, raw_manifest = read_manifest_bytes(self.model_dir)
            if manifest.framework != "onnx":
                raise ManifestError(f"framework {manifest.framework!r} is not served: only 'onnx'")
            path = self.model_dir / manifest.model_file
            with _open_model_file(path) as fh:
                verified = _identity(fh)
                sha256 = hash_model_file(fh)  # the one pass over the model's bytes
                if signed is not None:
                    self.signer = signed.check_model(manifest.model_file, sha256, raw_manifest)
                check_model_digest(manifest, verified[2], sha256, path)
                session = self._open_session(manifest, path)
                if _identity(fh) != verified or _path_identity(path) != verified[:2]:
                    raise ManifestError(f"{path} was replaced or written to while it was verified and "
                                        "loaded: not serving it")
            self._check_signature(manifest, session)
            self.signature = Signature(manifest.inputs, manifest.outputs)
            self.manifest = manifest
            self._session = session
            self.load_seconds = time.perf_counter() - start
            return manifest

    def _open_session(self, manifest: ModelManifest, path: Path):
        """The session of the model file at ``path``, its large weights mapped from the file."""
        import onnxruntime as ort

        try:
            mapped = map_weights(path)
        except WeightsError as exc:
            raise ManifestError(f"{manifest.model_file} is not a loadable ONNX model: {exc}") from None
        _use_request_arena(self.request_memory_mib)
        _return_large_blocks()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # A planned block per input shape would stay allocated for every batch size ever seen.
        options.enable_mem_pattern = False
        options.add_session_config_entry("session.use_env_allocators", "1")
        for key, value in session_config(path).items():
            options.add_session_config_entry(key, value)
        # The weights' bytes are mapped from the file just hashed, in place (the image's read-only
        # layer; load() checks it is still that file): what runs is what was verified. 256 MiB model:
        # by path ONNX Runtime peaks at 567 MiB and keeps 278 MiB of its own; mapped, 55 MiB
        # at load and 23 MiB of its own, the weight in 281 MiB of shared file pages.
        try:
            session = ort.InferenceSession(mapped.model, sess_options=options,
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ManifestError(f"{manifest.model_file} is not a loadable ONNX model: {exc}") from None
        run_options = ort.RunOptions()
        # Give the arena's memory back after every run: an idle worker holds no request memory.
        run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        run_options.log_severity_level = 4  # a refused run is reported once, by infer()
        self._run_options = run_options
        return session

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
                dtype = ONNX_TYPES.get(node.type)
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

    def predict(
        self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run the model on numpy arrays; return the requested outputs (all by default)."""
        return self.infer([ArrayTensor(i, name, value) for i, (name, value) in enumerate(inputs.items())],
                          outputs)

    def infer(
        self,
        tensors: Sequence[Tensor],
        outputs: Sequence[str] | None = None,
        on_run: Callable[[float], object] | None = None,
    ) -> dict[str, np.ndarray]:
        """Check ``tensors`` against the signature, then run the model; ``on_run`` gets the run time."""
        session = self._session
        if session is None:
            raise NotReady("the model is not loaded yet")
        names = self.signature.check(tensors, outputs)
        feed = {tensor.name: tensor.array() for tensor in tensors}
        start = time.perf_counter()
        try:
            results = session.run(names, feed, self._run_options)
        except Exception as exc:  # onnxruntime raises its own exception types
            if _ARENA_FULL not in str(exc):
                raise
            rows = tensors[0].shape[0] if tensors and tensors[0].shape else 1
            raise RequestMemoryExceeded(
                f"this request ({rows} rows) needs more memory than one request may use on this server "
                f"(MODELSHIP_REQUEST_MEMORY_MIB={self.request_memory_mib}): send fewer rows per request"
            ) from None
        if on_run is not None:
            on_run(time.perf_counter() - start)
        return dict(zip(names, results, strict=True))
