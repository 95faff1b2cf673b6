"""Publish, list and fetch versioned model directories in an Azure Blob Storage container.

Blob layout, per model ``NAME``::

    NAME/VERSION/<model file>     the ONNX file, committed first (create-only)
    NAME/VERSION/manifest.json    committed LAST (create-only): a version with a manifest is complete
    NAME/latest.json              the pointer: current version + the history of every publish

A version is visible only through its manifest, and versions are immutable (``publish``: how a
publish guarantees both). A model blob without a manifest is an interrupted publish's leftover,
never a version: list, show and fetch do not see it. ``fetch`` delivers a version verified and
whole, or leaves the destination untouched.

Module map: this module names and reads versions (references, listing, the latest pointer,
manifests) and builds the store; ``publish`` and ``fetch`` write and deliver them; ``transfer``
moves bytes, ``localdir`` owns the destination and the cache, ``connection`` bounds every wait and
maps the SDK's errors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import logging
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient

from modelship_contract.manifest import (
    MANIFEST_FILE,
    ManifestError,
    ModelManifest,
    is_alias_name,
    validate_name,
    validate_version,
)
from modelstore import connection
from modelstore.connection import BoundedRetry, ErrorMap, public_url, resolve_timeout
from modelstore.errors import IntegrityError, InvalidInput, NotFound
from modelstore.transfer import PROGRESS_THRESHOLD

if TYPE_CHECKING:
    from modelstore.fetch import FetchResult

__all__ = ["DEFAULT_CACHE_DIR", "DEFAULT_CONTAINER", "LATEST", "PROGRESS_THRESHOLD", "ModelStore",
           "VersionInfo", "parse_ref"]

log = logging.getLogger(__name__)

DEFAULT_CONTAINER = "models"
LATEST = "latest"
POINTER_BLOB = "latest.json"
POINTER_SCHEMA = 1
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "modelship" / "models"
MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class VersionInfo:
    """One published version as the store lists it."""

    name: str
    version: str
    sha256: str
    size: int
    model_file: str
    published_at: str
    """UTC ISO-8601 time the version's manifest was written."""
    publisher: str
    """Who published it (``MODELSHIP_PUBLISHER`` or ``user@host`` of the publisher)."""
    latest: bool = False
    """Whether the ``latest`` pointer names this version."""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_ref(ref: str) -> tuple[str, str]:
    """``NAME``, ``NAME@latest``, ``NAME@VERSION`` or ``NAME@ALIAS`` -> (name, what follows the @).

    An alias-shaped part (:func:`modelship_contract.manifest.is_alias_name`) is resolved by :meth:`resolve`.
    """
    if not isinstance(ref, str) or ref.count("@") > 1:
        raise InvalidInput(f"model reference {ref!r} is not NAME, NAME@VERSION, NAME@ALIAS or NAME@latest")
    name, at, version = ref.partition("@")
    if at and not version:
        raise InvalidInput(
            f"model reference {ref!r} has an empty version after '@': use {name}, {name}@VERSION, "
            f"{name}@ALIAS or {name}@latest"
        )
    version = version or LATEST
    try:
        validate_name(name, "model name")
        if version != LATEST:
            _validate_store_version(version)
    except ManifestError as exc:
        raise InvalidInput(f"model reference {ref!r}: {exc}") from None
    return name, version


def _validate_store_version(version: str) -> None:
    validate_version(version)
    # NAME/latest.json is the pointer blob; a version of that name would shadow it as a prefix.
    if version == POINTER_BLOB:
        raise ManifestError(f"version {version!r} is reserved for the latest pointer")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def default_publisher() -> str:
    """``MODELSHIP_PUBLISHER`` if set (CI sets it to the pipeline identity), else ``user@host``."""
    who = os.environ.get("MODELSHIP_PUBLISHER")
    if not who:
        try:
            user = getpass.getuser()
        except Exception:
            user = "unknown"
        who = f"{user}@{socket.gethostname()}"
    # Blob metadata must be ASCII.
    return who.encode("ascii", "replace").decode("ascii")[:200]


class ModelStore:
    """A container of versioned model directories."""

    def __init__(
        self,
        container: ContainerClient,
        *,
        account_url: str,
        create_container: bool = False,
        progress: bool = True,
        concurrency: int = 4,
        chunk_size: int = 8 * MiB,
        max_pointer_attempts: int = 100,
        timeout: float | None = None,
        signing_key: Path | None = None,
        trusted_keys: Path | None = None,
    ):
        if concurrency < 1:
            raise InvalidInput(f"concurrency must be >= 1, got {concurrency}")
        if chunk_size < 64 * 1024:
            raise InvalidInput(f"chunk_size must be >= 64 KiB, got {chunk_size}")
        self._container = container
        self.account_url = public_url(account_url)
        """Account endpoint without any query string: the only location ever logged."""
        self.container_name = container.container_name
        self.create_container = create_container
        self.progress = progress
        self.concurrency = concurrency
        """Requests in flight per transfer: the SDK's ``max_concurrency`` for a fetch, parallel
        block uploads (at most 4) for a publish."""
        self.chunk_size = chunk_size
        """Block size of a publish's upload. A fetch's range size is the client's
        ``max_chunk_get_size`` (``connection.CLIENT_SIZES``), which the SDK reads."""
        self.max_pointer_attempts = max_pointer_attempts
        self.signing_key = signing_key
        """Private key publish signs with (default: ``MODELSHIP_SIGNING_KEY`` or the local key)."""
        self.trusted_keys = trusted_keys
        """Public key(s) fetch accepts (default: ``MODELSHIP_TRUSTED_KEYS`` or the local trusted dir)."""
        # The client's retry policy when the store built the client (from_* below): its window is
        # reset at the start of every operation, so one operation's failures never shorten the next.
        retry = getattr(getattr(container, "_config", None), "retry_policy", None)
        self._retry = retry if isinstance(retry, BoundedRetry) else None
        self.timeout = self._retry.timeout if self._retry else resolve_timeout(timeout)
        """Seconds an unreachable store is retried (see ``modelstore.connection``)."""
        self._errors = ErrorMap(self.account_url, self.container_name, self.timeout)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_connection_string(
        cls, connection_string: str, container: str = DEFAULT_CONTAINER, timeout: float | None = None,
        **kwargs: Any,
    ) -> ModelStore:
        """For the emulator and local use; creates a missing container for the emulator only."""
        service = connection.service_from_connection_string(connection_string, resolve_timeout(timeout))
        kwargs.setdefault("create_container", service.account_name == connection.EMULATOR_ACCOUNT)
        return cls(connection.container_client(service, container), account_url=service.url, **kwargs)

    @classmethod
    def from_account_url(
        cls, url: str, container: str = DEFAULT_CONTAINER, credential: Any = None,
        timeout: float | None = None, **kwargs: Any,
    ) -> ModelStore:
        """For Azure: ``credential`` defaults to ``DefaultAzureCredential`` (workload identity,
        managed identity, ``az login``); account keys are deliberately not accepted here."""
        service = connection.service_from_account_url(url, credential, resolve_timeout(timeout))
        return cls(connection.container_client(service, container), account_url=url, **kwargs)

    @classmethod
    def from_env(
        cls, container: str | None = None, account_url: str | None = None, **kwargs: Any
    ) -> ModelStore:
        """``account_url`` or ``MODELSHIP_STORE_URL`` (Entra ID), else
        ``AZURE_STORAGE_CONNECTION_STRING`` (emulator); container from ``MODELSHIP_STORE_CONTAINER``;
        ``timeout`` from ``MODELSHIP_STORE_TIMEOUT`` unless given."""
        container = container or os.environ.get("MODELSHIP_STORE_CONTAINER") or DEFAULT_CONTAINER
        url = account_url or os.environ.get("MODELSHIP_STORE_URL")
        if url:
            return cls.from_account_url(url, container, **kwargs)
        cs = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
        if cs:
            return cls.from_connection_string(cs, container, **kwargs)
        raise InvalidInput(
            "no model store configured: pass --account-url or set MODELSHIP_STORE_URL "
            "(https://<account>.blob.core.windows.net, signs in with DefaultAzureCredential), "
            "or set AZURE_STORAGE_CONNECTION_STRING for the Azurite emulator"
        )

    def __repr__(self) -> str:
        return f"ModelStore({self.account_url}/{self.container_name})"

    @property
    def where(self) -> str:
        return self._errors.where

    def _reset_retry_window(self) -> None:
        if self._retry is not None:
            self._retry.reset()

    @contextlib.contextmanager
    def _azure_errors(self) -> Iterator[None]:
        """One store operation: a fresh retry window, and the SDK's errors mapped to the store's."""
        if self._retry is not None:
            self._retry.begin()
        with self._errors():
            yield

    # -- read ---------------------------------------------------------------------------------

    def _read_pointer(self, name: str) -> tuple[dict[str, Any] | None, str | None]:
        """The pointer document and its ETag, or (None, None) if the model has no pointer yet."""
        blob = self._container.get_blob_client(f"{name}/{POINTER_BLOB}")
        try:
            downloader = blob.download_blob()
            raw = downloader.readall()
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise
            return None, None
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or not isinstance(doc.get("history"), list):
                raise ValueError("missing history")
            latest = doc.get("latest")
            if latest is not None and not (
                isinstance(latest, dict)
                and all(isinstance(latest.get(k), str) for k in ("version", "sha256"))
                and isinstance(latest.get("size"), int)
            ):
                raise ValueError("'latest' is not a record with 'version', 'sha256' and 'size'")
            # A version names a blob path: '../other/1' must not lead a fetch elsewhere.
            for record in ([latest] if latest else []) + doc["history"]:
                if isinstance(record, dict) and "version" in record:
                    _validate_store_version(record["version"])
        except ValueError as exc:
            raise IntegrityError(
                f"pointer {name}/{POINTER_BLOB} in {self.where} is corrupt ({exc}); "
                "restore it from the version manifests before publishing"
            ) from None
        return doc, downloader.properties.etag


    # -- read ---------------------------------------------------------------------------------

    def models(self) -> list[str]:
        """Names of the models in the container."""
        with self._azure_errors():
            return sorted(
                p.name.rstrip("/") for p in self._container.walk_blobs(delimiter="/")
                if p.name.endswith("/") and not p.name.startswith("_")  # _datasets/ is no model
            )

    def versions(self, name: str) -> list[VersionInfo]:
        """Every complete version of ``name``, oldest first; empty if the model does not exist."""
        try:
            validate_name(name, "model name")
        except ManifestError as exc:
            raise InvalidInput(str(exc)) from None
        with self._azure_errors():
            pointer, _ = self._read_pointer(name)
            latest = pointer["latest"]["version"] if pointer and pointer.get("latest") else None
            found = []
            for blob in self._container.list_blobs(name_starts_with=f"{name}/", include=["metadata"]):
                parts = blob.name.split("/")
                if len(parts) != 3 or parts[2] != MANIFEST_FILE:
                    continue
                meta = blob.metadata or {}
                if "sha256" not in meta:  # written by hand, not by publish: read the manifest itself
                    m = self._read_manifest(name, parts[1])
                    meta = {"sha256": m.sha256, "size": m.size, "model_file": m.model_file}
                found.append(VersionInfo(
                    name=name,
                    version=parts[1],
                    sha256=meta["sha256"],
                    size=int(meta.get("size", 0)),
                    model_file=meta.get("model_file", ""),
                    published_at=meta.get("published_at", blob.last_modified.strftime("%Y-%m-%dT%H:%M:%SZ")),
                    publisher=meta.get("publisher", ""),
                    latest=parts[1] == latest,
                ))
        return sorted(found, key=lambda v: (v.published_at, v.version))

    def latest(self, name: str) -> VersionInfo:
        """The version the ``latest`` pointer names."""
        name, _ = parse_ref(name)
        with self._azure_errors():
            pointer, _ = self._read_pointer(name)
        if not pointer or not isinstance(pointer.get("latest"), dict):
            raise self._no_model(name)
        rec = pointer["latest"]
        return VersionInfo(
            name=name, version=rec["version"], sha256=rec["sha256"], size=int(rec["size"]),
            model_file=rec.get("model_file", ""), published_at=rec.get("published_at", ""),
            publisher=rec.get("publisher", ""), latest=True,
        )

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every publish recorded in the pointer, in the order the pointer saw them."""
        with self._azure_errors():
            pointer, _ = self._read_pointer(parse_ref(name)[0])
        return list(pointer["history"]) if pointer else []

    def resolve(self, ref: str) -> tuple[ModelManifest, bytes]:
        """The manifest (parsed and raw) of ``NAME[@VERSION|latest]``."""
        name, version = parse_ref(ref)
        # Aliases live in their own module, which builds on this one: imported here, not at the top.
        from modelstore.aliases import Aliases

        with self._azure_errors():
            if version == LATEST:
                version = self.latest(name).version
            elif is_alias_name(version):
                version = Aliases(self).resolve(name, version) or version
            raw = self._download_manifest(name, version)
        try:
            manifest = ModelManifest.from_dict(json.loads(raw))
        except (ValueError, ManifestError) as exc:
            raise IntegrityError(f"manifest of {name}@{version} in {self.where} is invalid: {exc}") from None
        if (manifest.name, manifest.version) != (name, version):
            raise IntegrityError(
                f"{name}/{version}/{MANIFEST_FILE} in {self.where} describes {manifest.ref}; "
                "the store was tampered with"
            )
        return manifest, raw

    def _read_manifest(self, name: str, version: str) -> ModelManifest:
        try:
            return ModelManifest.from_dict(json.loads(self._download_manifest(name, version)))
        except (ValueError, ManifestError) as exc:
            raise IntegrityError(
                f"manifest of {name}@{version} in {self.where} is invalid: {exc}"
            ) from None

    def _download_manifest(self, name: str, version: str) -> bytes:
        try:
            blob = self._container.get_blob_client(f"{name}/{version}/{MANIFEST_FILE}")
            return blob.download_blob().readall()
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise
            known = [v.version for v in self.versions(name)]
            if not known:
                raise self._no_model(name) from None
            from modelstore.aliases import Aliases

            if not is_alias_name(version):
                raise NotFound(
                    f"model '{name}' has no version '{version}' in {self.where}; "
                    f"published versions: {', '.join(known)}"
                ) from None
            aliases = ", ".join(a.alias for a in Aliases(self).list(name)) or "none"
            raise NotFound(
                f"model '{name}' has no version or alias '{version}' in {self.where}; "
                f"published versions: {', '.join(known)}; aliases: {aliases}"
            ) from None

    def _no_model(self, name: str) -> NotFound:
        return NotFound(
            f"no model '{name}' in {self.where}: publish one with `modelship-models publish DIR`"
        )

    # -- publish and fetch (each in its own module, which builds on this one) ------------------

    def publish(self, model_dir: Path | str, publisher: str | None = None) -> ModelManifest:
        """Upload a validated model directory as a new immutable version and move ``latest`` to it."""
        from modelstore import publish

        return publish.publish(self, model_dir, publisher)

    def fetch(self, ref: str, dest: Path | str, cache_dir: Path | str | None = None) -> FetchResult:
        """Download ``NAME[@VERSION|latest]`` into the model directory ``dest``, verified and atomic.

        On any failure ``dest`` is left exactly as it was. Bad references, destinations and cache
        directories are refused before any network call.
        """
        from modelstore import fetch

        return fetch.fetch(self, ref, dest, cache_dir)

