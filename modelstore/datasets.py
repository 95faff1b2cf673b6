"""Golden data sets: versioned, immutable, sha256-pinned artifacts in the model store.

Blob layout (``_datasets`` is not a model: model names start with a letter or digit)::

    _datasets/NAME/VERSION/rows.json       the rows, uploaded first (create-only)
    _datasets/NAME/VERSION/dataset.json    the manifest, uploaded LAST (create-only), pins rows.json's sha256

A data set directory holds the same two files. ``rows.json`` is ``{"features": [[...], ...],
"labels": [...]}`` written canonically (sorted keys, no spaces), so the same rows always have the
same sha256. There is no ``latest`` for a data set: an evaluation names its version, and the report
records the sha256 it scored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContentSettings

from modelship_contract.manifest import ManifestError, Task, validate_name, validate_version
from modelstore.errors import AlreadyExists, IntegrityError, InvalidInput, NotFound
from modelstore.store import ModelStore

DATASET_DIR = "_datasets"
DATASET_FILE = "dataset.json"
ROWS_FILE = "rows.json"
DATASET_SCHEMA = 1


@dataclasses.dataclass(frozen=True)
class DatasetManifest:
    """What ``dataset.json`` says about the rows beside it."""

    name: str
    version: str
    task: Task
    sha256: str
    size: int
    rows: int
    features: int
    classes: tuple[int, ...]
    source: str
    """Where the rows come from and how they were held out."""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def from_dict(cls, data: Any) -> DatasetManifest:
        try:
            if not isinstance(data, dict) or data.get("schema") != DATASET_SCHEMA:
                raise ManifestError(f"{DATASET_FILE} must be an object with schema {DATASET_SCHEMA}")
            validate_name(data.get("name"), "name")
            validate_version(data.get("version"), "version")
            task = Task(data.get("task"))
            if not isinstance(data.get("sha256"), str) or len(data["sha256"]) != 64:
                raise ManifestError("sha256 must be 64 hex digits")
            ints = {k: data.get(k) for k in ("size", "rows", "features")}
            if not all(isinstance(v, int) and v > 0 for v in ints.values()):
                raise ManifestError(f"size, rows and features must be positive integers, got {ints}")
            classes = data.get("classes")
            if not isinstance(classes, list) or not all(isinstance(c, int) for c in classes):
                raise ManifestError("classes must be a list of integer labels")
        except ValueError as exc:  # ManifestError is a ValueError; so is a bad Task
            raise InvalidInput(f"{DATASET_FILE} is not valid: {exc}") from None
        return cls(name=data["name"], version=data["version"], task=task, sha256=data["sha256"],
                   size=data["size"], rows=data["rows"], features=data["features"],
                   classes=tuple(classes), source=str(data.get("source", "")))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(schema=DATASET_SCHEMA, task=self.task.value, classes=list(self.classes))
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A verified data set in memory."""

    manifest: DatasetManifest
    features: list[list[float]]
    labels: list[int]


def encode_rows(features: list[list[float]], labels: list[int]) -> bytes:
    """The canonical bytes of ``rows.json``: the same rows always hash the same."""
    rows = {"features": features, "labels": labels}
    return json.dumps(rows, sort_keys=True, separators=(",", ":")).encode()


def write_dataset_dir(path: Path | str, name: str, version: str, features: list[list[float]],
                      labels: list[int], source: str) -> DatasetManifest:
    """Write ``rows.json`` and ``dataset.json`` into ``path`` (the trainer's held-out split)."""
    if len(features) != len(labels) or not features:
        raise InvalidInput(f"a data set needs as many labels as rows, got {len(features)} and {len(labels)}")
    width = {len(r) for r in features}
    if len(width) != 1:
        raise InvalidInput(f"every row needs the same number of features, got {sorted(width)}")
    data = encode_rows(features, labels)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / ROWS_FILE).write_bytes(data)
    manifest = DatasetManifest(
        name=validate_name(name, "name"), version=validate_version(version, "version"),
        task=Task.CLASSIFICATION, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
        rows=len(labels), features=width.pop(), classes=tuple(sorted(set(labels))), source=source)
    (path / DATASET_FILE).write_text(manifest.to_json())
    return manifest


def parse_dataset_ref(ref: str) -> tuple[str, str]:
    name, sep, version = (ref or "").partition("@")
    try:
        if not sep:
            raise ManifestError("no version")
        validate_name(name, "data set name")
        validate_version(version, "data set version")
    except ManifestError as exc:
        raise InvalidInput(f"data set reference {ref!r} is not NAME@VERSION ({exc}); data sets have "
                           "no 'latest': name the version you evaluate on") from None
    return name, version


class Datasets:
    """Publish and read golden data sets in one :class:`~modelstore.store.ModelStore`."""

    def __init__(self, store: ModelStore):
        self.store = store

    def _blob(self, name: str, version: str, file: str) -> Any:
        return self.store._container.get_blob_client(f"{DATASET_DIR}/{name}/{version}/{file}")

    def publish(self, path: Path | str) -> DatasetManifest:
        """Upload a data set directory as a new immutable version (rows first, manifest last)."""
        path = Path(path)
        try:
            manifest = DatasetManifest.from_dict(json.loads((path / DATASET_FILE).read_text()))
            data = (path / ROWS_FILE).read_bytes()
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"{path} is not a data set directory ({DATASET_FILE} + {ROWS_FILE}): "
                               f"{exc}") from None
        if hashlib.sha256(data).hexdigest() != manifest.sha256 or len(data) != manifest.size:
            raise IntegrityError(f"{path / ROWS_FILE} does not match the sha256 and size in {DATASET_FILE}")
        store = self.store
        settings = ContentSettings(content_type="application/json")
        with store._azure_errors():
            if store.create_container:
                with contextlib.suppress(ResourceExistsError):
                    store._container.create_container()
            rows_blob = self._blob(manifest.name, manifest.version, ROWS_FILE)
            try:
                rows_blob.upload_blob(data, overwrite=False, content_settings=settings)
            except ResourceExistsError:
                # An interrupted publish of the very same rows may resume; anything else is taken.
                if hashlib.sha256(rows_blob.download_blob().readall()).hexdigest() != manifest.sha256:
                    raise self._taken(manifest) from None
            try:
                self._blob(manifest.name, manifest.version, DATASET_FILE).upload_blob(
                    manifest.to_json().encode(), overwrite=False, content_settings=settings)
            except ResourceExistsError:
                raise self._taken(manifest) from None
        return manifest

    def _taken(self, manifest: DatasetManifest) -> AlreadyExists:
        return AlreadyExists(f"data set {manifest.ref} is already published in {self.store.where} and "
                             "data sets are immutable: publish the new rows as a new version")

    def manifest(self, ref: str) -> DatasetManifest:
        name, version = parse_dataset_ref(ref)
        with self.store._azure_errors():
            try:
                raw = self._blob(name, version, DATASET_FILE).download_blob().readall()
            except ResourceNotFoundError as exc:
                if getattr(exc, "error_code", None) == "ContainerNotFound":
                    raise
                known = ", ".join(m.ref for m in self.list()) or "none"
                raise NotFound(f"no data set {ref} in {self.store.where}; data sets: {known}") from None
        try:
            manifest = DatasetManifest.from_dict(json.loads(raw))
        except (ValueError, InvalidInput) as exc:
            raise IntegrityError(f"{DATASET_FILE} of {ref} in {self.store.where} is invalid: {exc}") from None
        if manifest.ref != f"{name}@{version}":
            raise IntegrityError(f"{DATASET_DIR}/{name}/{version}/{DATASET_FILE} describes {manifest.ref}; "
                                 "the store was tampered with")
        return manifest

    def load(self, ref: str) -> Dataset:
        """The rows of ``NAME@VERSION``, verified against the manifest's sha256."""
        manifest = self.manifest(ref)
        with self.store._azure_errors():
            data = self._blob(manifest.name, manifest.version, ROWS_FILE).download_blob().readall()
        digest = hashlib.sha256(data).hexdigest()
        if digest != manifest.sha256:
            raise IntegrityError(f"sha256 mismatch for data set {manifest.ref} from {self.store.where}: "
                                 f"downloaded {digest}, {DATASET_FILE} pins {manifest.sha256}; refusing to "
                                 "evaluate on it")
        rows = json.loads(data)
        features, labels = rows.get("features"), rows.get("labels")
        if not (isinstance(features, list) and isinstance(labels, list) and len(features) == len(labels)
                == manifest.rows and all(len(r) == manifest.features for r in features)):
            raise IntegrityError(f"data set {manifest.ref} does not hold the {manifest.rows} rows of "
                                 f"{manifest.features} features its manifest describes")
        return Dataset(manifest, features, labels)

    def list(self) -> list[DatasetManifest]:
        found = []
        with self.store._azure_errors():
            for blob in self.store._container.list_blobs(name_starts_with=f"{DATASET_DIR}/"):
                parts = blob.name.split("/")
                if len(parts) == 4 and parts[3] == DATASET_FILE:
                    found.append(self.manifest(f"{parts[1]}@{parts[2]}"))
        return found

