"""The model directory contract, shared by the trainer, the model store, the server and the stack.

A model directory holds one ONNX file and ``manifest.json``. This module is the single
definition of that manifest: it imports nothing outside the standard library so that the
server image, the model-store CLI and the Pulumi program can all read it. The datatype tables
(ONNX Runtime's and numpy's names for each datatype) live here too, as plain strings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

MANIFEST_FILE = "manifest.json"
SCHEMA_VERSION = 1
_CHUNK = 1024 * 1024

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
"""Model names: RFC 1123 labels, so they fit blob paths, image tags and Kubernetes labels."""
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,62}$")
"""Model versions: characters valid in an image tag; ``latest`` is reserved for the pointer."""
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
RESERVED_VERSIONS = frozenset({"latest"})
FIELDS = ("schema", "name", "version", "model_file", "sha256", "size", "framework", "trained_with",
          "inputs", "outputs", "created_at", "source_revision", "metrics", "evaluation")
"""Every field of schema 1, in ``to_dict`` order: any other field is refused."""
ALIAS_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
"""Alias names (``production``): the model store resolves ``NAME@ALIAS`` to the version it names."""
ALIAS_DIR = "_aliases"
"""The model store keeps alias ``A`` of model ``N`` in the blob ``N/_aliases/A.json`` (``modelstore.aliases``;
the stack's release trigger filters on it and its role condition lets the pipeline write it)."""
EVALUATIONS_DIR = "evaluations"
"""Evaluation reports of ``N@V`` are the blobs ``N/V/evaluations/*.json`` (``modelstore.reports``)."""


class ManifestError(ValueError):
    """A model directory or manifest that breaks the contract; the message names the field."""


class Datatype(StrEnum):
    """Tensor datatypes of the Open Inference Protocol."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"


ONNX_TYPES: Mapping[str, Datatype] = {
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
"""ONNX Runtime's type name of a graph input or output -> the manifest's datatype."""

NUMPY_TYPES: Mapping[Datatype, str] = {
    Datatype.BOOL: "bool",
    Datatype.UINT8: "uint8",
    Datatype.UINT16: "uint16",
    Datatype.UINT32: "uint32",
    Datatype.UINT64: "uint64",
    Datatype.INT8: "int8",
    Datatype.INT16: "int16",
    Datatype.INT32: "int32",
    Datatype.INT64: "int64",
    Datatype.FP16: "float16",
    Datatype.FP32: "float32",
    Datatype.FP64: "float64",
}
"""Datatype -> numpy dtype name (``np.dtype(name)``); BYTES has no fixed-size numpy equivalent and is
not served."""


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One named input or output of the model; ``-1`` in ``shape`` is a variable dimension."""

    name: str
    datatype: Datatype
    shape: tuple[int, ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> TensorSpec:
        if not isinstance(data, Mapping):
            raise ManifestError(f"{where} must be an object with name, datatype and shape")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise ManifestError(f"{where}.name must be a non-empty string, got {name!r}")
        try:
            datatype = Datatype(data.get("datatype"))
        except ValueError:
            allowed = ", ".join(d.value for d in Datatype)
            raise ManifestError(
                f"{where}.datatype {data.get('datatype')!r} is not one of: {allowed}"
            ) from None
        shape = data.get("shape")
        if (
            not isinstance(shape, list)
            or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= -1 and d != 0 for d in shape)
        ):
            raise ManifestError(
                f"{where}.shape must be a non-empty list of positive ints or -1, got {shape!r}"
            )
        return cls(name=name, datatype=datatype, shape=tuple(shape))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype.value, "shape": list(self.shape)}


class Task(StrEnum):
    """What a model does, as far as the evaluation gate is concerned."""

    CLASSIFICATION = "classification"


class Metric(StrEnum):
    """Metrics the evaluation gate scores (all: higher is better, from 0 to 1)."""

    ACCURACY = "accuracy"
    MACRO_F1 = "macro_f1"


@dataclasses.dataclass(frozen=True)
class EvaluationSpec:
    """How a model is judged before an alias may name it (``evaluation`` in the manifest)."""

    task: Task
    metric: Metric
    tolerance: float
    """How much worse than the model it replaces it may score, in the metric's units
    (0.005 = half a point of accuracy)."""
    dataset: str = ""
    """The golden data set's name (``digits-golden``); its version is chosen at evaluation time."""

    def __post_init__(self) -> None:
        if not isinstance(self.tolerance, (int, float)) or isinstance(self.tolerance, bool) \
                or not 0 <= self.tolerance <= 1:
            raise ManifestError(f"evaluation.tolerance must be a number from 0 to 1, got {self.tolerance!r}")
        if self.dataset:
            validate_name(self.dataset, "evaluation.dataset")

    @classmethod
    def from_dict(cls, data: Any) -> EvaluationSpec:
        if not isinstance(data, Mapping):
            raise ManifestError("evaluation must be an object with task, metric and tolerance")
        unknown = sorted(set(data) - {"task", "metric", "tolerance", "dataset"})
        if unknown:
            raise ManifestError(f"evaluation has unknown keys {unknown}; allowed: task, metric, tolerance, "
                                "dataset")
        values = {}
        for key, enum in (("task", Task), ("metric", Metric)):
            try:
                values[key] = enum(data.get(key))
            except ValueError:
                allowed = ", ".join(m.value for m in enum)
                raise ManifestError(f"evaluation.{key} {data.get(key)!r} is not one of: {allowed}") from None
        dataset = data.get("dataset", "")
        if not isinstance(dataset, str):
            raise ManifestError(f"evaluation.dataset must be a data set name, got {dataset!r}")
        return cls(task=values["task"], metric=values["metric"], tolerance=data.get("tolerance"),
                   dataset=dataset)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"task": self.task.value, "metric": self.metric.value,
                               "tolerance": self.tolerance}
        if self.dataset:
            out["dataset"] = self.dataset
        return out


@dataclasses.dataclass(frozen=True)
class ModelManifest:
    """What ``manifest.json`` says about the model file beside it."""

    name: str
    version: str
    model_file: str
    sha256: str
    size: int
    framework: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    created_at: str
    source_revision: str
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)
    trained_with: str = ""
    evaluation: EvaluationSpec | None = None
    """How the evaluation gate judges this model; absent in manifests written before the gate."""

    def __post_init__(self) -> None:
        validate_name(self.name, "name")
        validate_version(self.version, "version")
        if not SHA256_RE.match(self.sha256):
            raise ManifestError(f"sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if "/" in self.model_file or self.model_file in ("", ".", "..", MANIFEST_FILE):
            raise ManifestError(
                f"model_file must be a plain file name beside {MANIFEST_FILE}, got {self.model_file!r}"
            )
        if not isinstance(self.size, int) or self.size < 1:
            raise ManifestError(f"size must be a positive number of bytes, got {self.size!r}")
        if not self.inputs or not self.outputs:
            raise ManifestError("inputs and outputs must each list at least one tensor")

    @property
    def ref(self) -> str:
        """``name@version``, the form the model store's CLI takes."""
        return f"{self.name}@{self.version}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelManifest:
        if not isinstance(data, Mapping):
            raise ManifestError(f"{MANIFEST_FILE} must hold a JSON object")
        if data.get("schema") != SCHEMA_VERSION:
            raise ManifestError(
                f"schema must be {SCHEMA_VERSION}, got {data.get('schema')!r}"
            )
        required = ("name", "version", "model_file", "sha256", "size", "framework",
                    "inputs", "outputs", "created_at", "source_revision")
        missing = [k for k in required if k not in data]
        if missing:
            raise ManifestError(f"{MANIFEST_FILE} is missing: {', '.join(missing)}")
        # Unknown fields are refused, not dropped: a misspelt "metrcis" would otherwise vanish
        # silently, and a field this reader does not know needs a new schema version.
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise ManifestError(
                f"{MANIFEST_FILE} has unknown field(s) {', '.join(map(repr, unknown))}; "
                f"schema {SCHEMA_VERSION} allows: {', '.join(FIELDS)}"
            )
        for key in ("inputs", "outputs"):
            if not isinstance(data[key], Sequence) or isinstance(data[key], str):
                raise ManifestError(f"{key} must be a list of tensors")
        metrics = data.get("metrics", {})
        if not isinstance(metrics, Mapping) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()
        ):
            raise ManifestError(f"metrics must map names to numbers, got {metrics!r}")
        for key in ("name", "version", "model_file", "sha256", "framework", "created_at",
                    "source_revision"):
            if not isinstance(data[key], str):
                raise ManifestError(f"{key} must be a string, got {data[key]!r}")
        return cls(
            name=data["name"],
            version=data["version"],
            model_file=data["model_file"],
            sha256=data["sha256"],
            size=data["size"],
            framework=data["framework"],
            inputs=tuple(TensorSpec.from_dict(t, f"inputs[{i}]") for i, t in enumerate(data["inputs"])),
            outputs=tuple(TensorSpec.from_dict(t, f"outputs[{i}]") for i, t in enumerate(data["outputs"])),
            created_at=data["created_at"],
            source_revision=data["source_revision"],
            metrics=dict(metrics),
            trained_with=str(data.get("trained_with", "")),
            evaluation=EvaluationSpec.from_dict(data["evaluation"]) if "evaluation" in data else None,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "name": self.name,
            "version": self.version,
            "model_file": self.model_file,
            "sha256": self.sha256,
            "size": self.size,
            "framework": self.framework,
            "trained_with": self.trained_with,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "created_at": self.created_at,
            "source_revision": self.source_revision,
            "metrics": dict(self.metrics),
        }
        if self.evaluation is not None:
            out["evaluation"] = self.evaluation.to_dict()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def validate_name(value: str, key: str = "name") -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ManifestError(
            f"{key} {value!r} is not allowed: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def validate_version(value: str, key: str = "version") -> str:
    if not isinstance(value, str) or not VERSION_RE.match(value) or value in RESERVED_VERSIONS:
        raise ManifestError(
            f"{key} {value!r} is not allowed: use 1-63 of letters, digits, '.', '_' and '-', "
            "starting with a letter or digit; 'latest' is reserved"
        )
    return value


def is_alias_name(value: str) -> bool:
    """Whether ``value`` has the shape of an alias (``latest`` is the pointer, not an alias)."""
    return isinstance(value, str) and bool(ALIAS_RE.match(value)) and value not in RESERVED_VERSIONS


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large models never sit whole in memory."""
    with open(path, "rb") as fh:
        return hash_model_file(fh)


def hash_model_file(fh: BinaryIO) -> str:
    """Hex sha256 of the open file ``fh``, read once from where it stands (its start, when just opened)."""
    digest = hashlib.sha256()
    while chunk := fh.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def check_model_digest(manifest: ModelManifest, size: int, sha256: str, where: Path | str) -> None:
    """Check a model file's size and sha256, computed by the caller, against the manifest."""
    if size != manifest.size:
        raise ManifestError(f"{where} is {size} bytes but {MANIFEST_FILE} says {manifest.size}")
    if sha256 != manifest.sha256:
        raise ManifestError(
            f"sha256 mismatch for {where}: file has {sha256}, {MANIFEST_FILE} says {manifest.sha256}"
        )


def read_manifest(model_dir: Path | str) -> ModelManifest:
    """Parse ``manifest.json`` in ``model_dir`` without touching the model file."""
    return read_manifest_bytes(model_dir)[0]


def read_manifest_bytes(model_dir: Path | str) -> tuple[ModelManifest, bytes]:
    """``manifest.json`` in ``model_dir``, parsed, and the very bytes parsed (to hash what was read)."""
    path = Path(model_dir) / MANIFEST_FILE
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ManifestError(f"no {MANIFEST_FILE} in {model_dir}") from None
    except IsADirectoryError:
        raise ManifestError(f"{path} is a directory; it must be a JSON file") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path} is not UTF-8 text (byte {exc.start}); it must be a JSON file") from None
    except OSError as exc:  # a symlink loop, no permission, an I/O error
        raise ManifestError(f"{path} cannot be read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from None
    return ModelManifest.from_dict(data), raw


def load_model_dir(model_dir: Path | str) -> ModelManifest:
    """Read the manifest and check the model file's size and sha256 against it."""
    return load_model_dir_bytes(model_dir)[0]


def load_model_dir_bytes(model_dir: Path | str) -> tuple[ModelManifest, bytes]:
    """:func:`load_model_dir`, and the very ``manifest.json`` bytes parsed (to upload what was read)."""
    manifest, raw = read_manifest_bytes(model_dir)
    model_path = Path(model_dir) / manifest.model_file
    if not model_path.is_file():
        raise ManifestError(f"{model_path} named by {MANIFEST_FILE} does not exist or is not a file")
    try:
        with open(model_path, "rb") as fh:
            check_model_digest(manifest, os.fstat(fh.fileno()).st_size, hash_model_file(fh), model_path)
    except OSError as exc:
        raise ManifestError(f"{model_path} cannot be read: {exc.strerror or exc}") from None
    return manifest, raw


def git_revision(path: Path | str, *, clean: bool = False, timeout: float = 20) -> str | None:
    """Short sha (12 hex digits) of the git commit checked out where ``path`` is, or None.

    The one way the project names the source revision it built from: the manifest's
    ``source_revision``, the image tag's ``<revision>`` and the stack's default revision all come
    from here. None when git or the repository is missing, or, with ``clean``, when anything under
    ``path`` differs from that commit (then the caller names the revision another way).
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, check=True,
                              timeout=timeout).stdout

    try:
        if clean and git("status", "--porcelain", "--", ".").strip():
            return None
        return git("rev-parse", "--short=12", "HEAD").strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
