"""Publish, list and fetch versioned model directories in an Azure Blob Storage container.

Blob layout, per model ``NAME``::

    NAME/VERSION/<model file>     the ONNX file, uploaded first (create-only)
    NAME/VERSION/manifest.json    uploaded LAST (create-only): a version with a manifest is complete
    NAME/latest.json              the pointer: current version + the history of every publish

Versions are immutable: both blobs of a version are written with ``If-None-Match: *``, so a second
publish of the same version fails on the service side, not on a racy client-side check. The pointer
is rewritten with ``If-Match: <etag>`` and re-read on conflict, so concurrent publishers of
different versions cannot lose each other's history entries.

Fetches download concurrent byte ranges pinned to the blob's ETag, hash them in order while they
arrive, and swap a fully verified staging directory into place, so the destination is either the
old model or the new verified one, never a mix. A local cache keyed by sha256 makes a repeated
fetch of an unchanged model transfer no bytes.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import getpass
import hashlib
import json
import logging
import os
import random
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from modelserver.manifest import (
    MANIFEST_FILE,
    ManifestError,
    ModelManifest,
    is_alias_name,
    load_model_dir,
    validate_name,
    validate_version,
)
from modelstore.errors import (
    AccessDenied,
    AlreadyExists,
    IntegrityError,
    InvalidInput,
    ModelStoreError,
    NotFound,
)

log = logging.getLogger(__name__)

DEFAULT_CONTAINER = "models"
LATEST = "latest"
POINTER_BLOB = "latest.json"
POINTER_SCHEMA = 1
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "modelship" / "models"
MiB = 1024 * 1024
PROGRESS_THRESHOLD = 16 * MiB
"""Transfers at least this large show a progress bar (on a TTY, unless quiet)."""
_IO_CHUNK = 1 * MiB
# Transfer sizes for the SDK: small enough that neither a publish nor a fetch ever holds more than
# (concurrency x 8 MiB) of a model in memory; the defaults would buffer 32-64 MiB in one request.
_CLIENT_SIZES = {
    "max_single_put_size": 8 * MiB,
    "max_block_size": 8 * MiB,
    "max_single_get_size": 8 * MiB,
    "max_chunk_get_size": 8 * MiB,
}
_EMULATOR_ACCOUNT = "devstoreaccount1"


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


@dataclasses.dataclass(frozen=True)
class FetchResult:
    """What a fetch put at its destination."""

    manifest: ModelManifest
    bytes_transferred: int
    """Bytes of the model file downloaded from the store (0 on a cache hit)."""
    cache_hit: bool
    dest: Path | None = None
    signer: str | None = None
    """``key sha256:...`` of the trusted key that verified the model's signature."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.manifest.name,
            "version": self.manifest.version,
            "sha256": self.manifest.sha256,
            "size": self.manifest.size,
            "model_file": self.manifest.model_file,
            "dest": str(self.dest) if self.dest else None,
            "cache_hit": self.cache_hit,
            "bytes_transferred": self.bytes_transferred,
            "signer": self.signer,
        }


def parse_ref(ref: str) -> tuple[str, str]:
    """``NAME``, ``NAME@latest``, ``NAME@VERSION`` or ``NAME@ALIAS`` -> (name, what follows the @).

    An alias-shaped part (:func:`modelserver.manifest.is_alias_name`) is resolved by :meth:`resolve`.
    """
    if not isinstance(ref, str) or ref.count("@") > 1:
        raise InvalidInput(f"model reference {ref!r} is not NAME, NAME@VERSION, NAME@ALIAS or NAME@latest")
    name, _, version = ref.partition("@")
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


def _public_url(url: str) -> str:
    """The URL without its query string, so a SAS token can never reach a message or a log."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


class _Progress:
    """A tqdm bar on stderr for large transfers; a no-op otherwise."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self._bar = None
        if enabled and total >= PROGRESS_THRESHOLD and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                             file=sys.stderr, leave=False)
        self._lock = threading.Lock()

    def update(self, n: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(n)

    def hook(self, current: int, _total: int | None) -> None:
        """``progress_hook`` for the SDK's uploads, which report the running total."""
        if self._bar is not None:
            with self._lock:
                self._bar.update(current - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


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
        signing_key: Path | None = None,
        trusted_keys: Path | None = None,
    ):
        if concurrency < 1:
            raise InvalidInput(f"concurrency must be >= 1, got {concurrency}")
        if chunk_size < 64 * 1024:
            raise InvalidInput(f"chunk_size must be >= 64 KiB, got {chunk_size}")
        self._container = container
        self.account_url = _public_url(account_url)
        """Account endpoint without any query string: the only location ever logged."""
        self.container_name = container.container_name
        self.create_container = create_container
        self.progress = progress
        self.concurrency = concurrency
        self.chunk_size = chunk_size
        self.max_pointer_attempts = max_pointer_attempts
        self.signing_key = signing_key
        """Private key publish signs with (default: ``MODELSHIP_SIGNING_KEY`` or the local key)."""
        self.trusted_keys = trusted_keys
        """Public key(s) fetch accepts (default: ``MODELSHIP_TRUSTED_KEYS`` or the local trusted dir)."""

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_connection_string(
        cls, connection_string: str, container: str = DEFAULT_CONTAINER, **kwargs: Any
    ) -> ModelStore:
        """For the emulator and local use; creates a missing container for the emulator only."""
        try:
            service = BlobServiceClient.from_connection_string(connection_string, **_CLIENT_SIZES)
        except ValueError:
            # Never echo the string: it holds the account key.
            raise InvalidInput(
                "AZURE_STORAGE_CONNECTION_STRING is malformed: expected "
                "'DefaultEndpointsProtocol=...;AccountName=...;AccountKey=...;BlobEndpoint=...'"
            ) from None
        emulator = service.account_name == _EMULATOR_ACCOUNT
        kwargs.setdefault("create_container", emulator)
        return cls(_container_client(service, container), account_url=service.url, **kwargs)

    @classmethod
    def from_account_url(
        cls, url: str, container: str = DEFAULT_CONTAINER, credential: Any = None, **kwargs: Any
    ) -> ModelStore:
        """For Azure: ``credential`` defaults to ``DefaultAzureCredential`` (workload identity,
        managed identity, ``az login``); account keys are deliberately not accepted here."""
        parts = urlsplit(url or "")
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
            raise InvalidInput(
                f"account URL {_public_url(url or '')!r} is not valid: use "
                "https://<account>.blob.core.windows.net (no SAS or query string)"
            )
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise InvalidInput(f"account URL {url!r} must use https (plain http only for 127.0.0.1)")
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        service = BlobServiceClient(url, credential=credential, **_CLIENT_SIZES)
        return cls(_container_client(service, container), account_url=url, **kwargs)

    @classmethod
    def from_env(
        cls, container: str | None = None, account_url: str | None = None, **kwargs: Any
    ) -> ModelStore:
        """``account_url`` or ``MODELSHIP_STORE_URL`` (Entra ID), else
        ``AZURE_STORAGE_CONNECTION_STRING`` (emulator); container from ``MODELSHIP_STORE_CONTAINER``."""
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
        return f"container '{self.container_name}' at {self.account_url}"

    # -- publish ------------------------------------------------------------------------------

    def publish(self, model_dir: Path | str, publisher: str | None = None) -> ModelManifest:
        """Upload a validated model directory as a new immutable version and move ``latest`` to it."""
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise InvalidInput(f"model directory {model_dir} does not exist or is not a directory")
        try:
            manifest = load_model_dir(model_dir)
            _validate_store_version(manifest.version)
        except ManifestError as exc:
            raise InvalidInput(f"model directory {model_dir} is not valid: {exc}") from None
        publisher = publisher or default_publisher()
        prefix = f"{manifest.name}/{manifest.version}"
        model_path = model_dir / manifest.model_file
        before = model_path.stat()
        # Signed before anything is uploaded; the manifest is uploaded as the bytes that were signed.
        from modelstore import signing  # not at import: `python -m modelstore.signing` imports this module
        raw_manifest = (model_dir / MANIFEST_FILE).read_bytes()
        signature, signer = signing.sign_for_publish(model_dir, manifest.model_file, self.signing_key)
        with self._azure_errors():
            if self.create_container:
                with contextlib.suppress(ResourceExistsError):
                    self._container.create_container()
            manifest_blob = self._container.get_blob_client(f"{prefix}/{MANIFEST_FILE}")
            if manifest_blob.exists():
                raise self._already_exists(manifest)
            self._refuse_alias_name(manifest)
            published_at = _now()
            meta = {
                "sha256": manifest.sha256,
                "size": str(manifest.size),
                "model_file": manifest.model_file,
                "publisher": publisher,
                "published_at": published_at,
                "signer": f"sha256:{signer[:16]}",
            }
            self._upload_model_file(manifest, model_path, meta)
            after = model_path.stat()
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                raise IntegrityError(
                    f"{model_path} changed while it was being uploaded; nothing was published "
                    f"(the partial {prefix}/{manifest.model_file} has no manifest, so it is not a version)"
                )
            # Overwritable: until the manifest exists the version is not complete (a resumed publish).
            self._container.get_blob_client(f"{prefix}/{signing.SIGNATURE_FILE}").upload_blob(
                signature, overwrite=True, metadata={"signer": meta["signer"]},
                content_settings=ContentSettings(content_type="application/json"),
            )
            try:
                manifest_blob.upload_blob(
                    raw_manifest,
                    overwrite=False,
                    metadata=meta,
                    content_settings=ContentSettings(content_type="application/json"),
                )
            except ResourceExistsError:
                raise self._already_exists(manifest) from None
            record = {k: meta[k] for k in ("sha256", "model_file", "publisher", "published_at")}
            record.update(version=manifest.version, size=manifest.size)
            self._move_latest(manifest.name, record)
        log.info("published %s (%d bytes) to %s", manifest.ref, manifest.size, self.where)
        return manifest

    def _upload_model_file(self, manifest: ModelManifest, path: Path, meta: dict[str, str]) -> None:
        blob = self._container.get_blob_client(f"{manifest.name}/{manifest.version}/{manifest.model_file}")
        bar = _Progress(manifest.size, f"upload {manifest.ref}", self.progress)
        try:
            with open(path, "rb") as fh:
                blob.upload_blob(
                    fh,
                    length=manifest.size,
                    overwrite=False,
                    metadata=meta,
                    max_concurrency=min(self.concurrency, 4),
                    progress_hook=bar.hook,
                    content_settings=ContentSettings(content_type="application/octet-stream"),
                )
        except ResourceExistsError:
            # An earlier publish of this version died before writing its manifest. Resume only if
            # the stored file is the very same model; otherwise the version is taken.
            props = blob.get_blob_properties()
            if props.metadata.get("sha256") != manifest.sha256 or props.size != manifest.size:
                raise self._already_exists(manifest) from None
            log.info("resuming the interrupted publish of %s", manifest.ref)
        finally:
            bar.close()

    def _refuse_alias_name(self, manifest: ModelManifest) -> None:
        """``NAME@X`` must mean one thing: a version may not take the name of an existing alias."""
        from modelstore.aliases import Aliases

        if is_alias_name(manifest.version) and Aliases(self).read(manifest.name, manifest.version)[0]:
            raise InvalidInput(
                f"{manifest.ref}: '{manifest.version}' is an alias of '{manifest.name}'; "
                "pick a version that is not an alias name"
            )

    def _already_exists(self, manifest: ModelManifest) -> AlreadyExists:
        return AlreadyExists(
            f"{manifest.ref} is already published in {self.where} and versions are immutable: "
            "bump 'version' in manifest.json and publish again"
        )

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
        except ValueError as exc:
            raise IntegrityError(
                f"pointer {name}/{POINTER_BLOB} in {self.where} is corrupt ({exc}); "
                "restore it from the version manifests before publishing"
            ) from None
        return doc, downloader.properties.etag

    def _move_latest(self, name: str, record: dict[str, Any]) -> None:
        blob = self._container.get_blob_client(f"{name}/{POINTER_BLOB}")
        for attempt in range(self.max_pointer_attempts):
            doc, etag = self._read_pointer(name)
            doc = doc or {"schema": POINTER_SCHEMA, "name": name, "history": []}
            if all(h.get("version") != record["version"] for h in doc["history"]):
                doc["history"].append(record)
            doc["latest"] = record
            doc["updated_at"] = _now()
            data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
            settings = ContentSettings(content_type="application/json")
            try:
                if etag is None:
                    blob.upload_blob(data, overwrite=False, content_settings=settings)
                else:
                    blob.upload_blob(data, overwrite=True, etag=etag,
                                     match_condition=MatchConditions.IfNotModified,
                                     content_settings=settings)
                return
            except (ResourceModifiedError, ResourceExistsError):
                # Another publisher moved the pointer between our read and write: re-read, re-apply.
                log.debug("latest pointer of %s changed concurrently (attempt %d)", name, attempt + 1)
                time.sleep(random.uniform(0, min(0.02 * 2**attempt, 0.5)))
        raise ModelStoreError(
            f"{name}@{record['version']} is published, but the latest pointer could not be moved after "
            f"{self.max_pointer_attempts} concurrent updates; publish again to retry moving it"
        )

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

    # -- fetch --------------------------------------------------------------------------------

    def fetch(self, ref: str, dest: Path | str, cache_dir: Path | str | None = None) -> FetchResult:
        """Download ``NAME[@VERSION|latest]`` into the model directory ``dest``, verified and atomic.

        On any failure ``dest`` is left exactly as it was.
        """
        dest = Path(dest).absolute()
        _check_dest(dest)
        manifest, raw_manifest = self.resolve(ref)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Staging beside dest: same filesystem, so the final swap is a rename.
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".staging", dir=dest.parent))
        try:
            staging.chmod(0o755)  # mkdtemp's 0700 would become DEST's mode after the swap
            self._download_signature(manifest, staging)  # an unsigned version fails before the download
            target = staging / manifest.model_file
            cached = Path(cache_dir) / "sha256" / manifest.sha256 if cache_dir else None
            cache_hit = cached is not None and self._copy_from_cache(cached, target, manifest)
            transferred = 0
            if not cache_hit:
                transferred = self._download_model(manifest, target)
                if cached is not None:
                    _populate_cache(target, cached)
            (staging / MANIFEST_FILE).write_bytes(raw_manifest)
            from modelstore import signing

            signer = signing.verify_fetched(staging, manifest.ref, self.where, self.trusted_keys)
            _swap_into_place(staging, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("fetched %s into %s (%s, %d bytes transferred)", manifest.ref, dest,
                 "cache hit" if cache_hit else "downloaded", transferred)
        return FetchResult(manifest=manifest, bytes_transferred=transferred, cache_hit=cache_hit, dest=dest,
                           signer=signer.short)

    def _download_signature(self, manifest: ModelManifest, staging: Path) -> None:
        from modelstore import signing

        blob = self._container.get_blob_client(f"{manifest.name}/{manifest.version}/{signing.SIGNATURE_FILE}")
        with self._azure_errors():
            try:
                data = blob.download_blob().readall()
            except ResourceNotFoundError:
                raise signing.SignatureRefused(
                    f"refusing {manifest.ref} from {self.where}: model signature check failed (unsigned): "
                    f"the version has no {signing.SIGNATURE_FILE}. Publish a new version (publish signs it). "
                    "The destination was left unchanged.", signing.Check.UNSIGNED,
                ) from None
        (staging / signing.SIGNATURE_FILE).write_bytes(data)

    def _copy_from_cache(self, cached: Path, target: Path, manifest: ModelManifest) -> bool:
        try:
            if cached.stat().st_size != manifest.size:
                raise ValueError("size")
        except (FileNotFoundError, ValueError):
            return False
        digest = hashlib.sha256()
        with open(cached, "rb") as src, open(target, "wb") as dst:
            while chunk := src.read(_IO_CHUNK):
                digest.update(chunk)
                dst.write(chunk)
        if digest.hexdigest() == manifest.sha256:
            return True
        log.warning("cached copy of %s is corrupt; discarding it and downloading again", manifest.ref)
        with contextlib.suppress(OSError):
            cached.unlink()
        target.unlink()
        return False

    def _download_model(self, manifest: ModelManifest, target: Path) -> int:
        blob_name = f"{manifest.name}/{manifest.version}/{manifest.model_file}"
        blob = self._container.get_blob_client(blob_name)
        with self._azure_errors():
            try:
                props = blob.get_blob_properties()
            except ResourceNotFoundError:
                raise IntegrityError(
                    f"{manifest.ref} in {self.where} has a manifest but no {manifest.model_file}; "
                    "the version is damaged: publish a new version"
                ) from None
            if props.size != manifest.size:
                raise IntegrityError(
                    f"{blob_name} in {self.where} is {props.size} bytes but its manifest says "
                    f"{manifest.size}; refusing it (destination left unchanged)"
                )
            bar = _Progress(props.size, f"fetch {manifest.ref}", self.progress)
            try:
                digest = self._download_ranges(blob, props.size, props.etag, target, bar)
            except ResourceModifiedError:
                raise ModelStoreError(
                    f"{blob_name} changed while it was being downloaded; fetch again"
                ) from None
            finally:
                bar.close()
        if digest != manifest.sha256:
            raise IntegrityError(
                f"sha256 mismatch for {manifest.ref} from {self.where}: downloaded {digest}, "
                f"manifest says {manifest.sha256}. The stored model is corrupt or was tampered with; "
                "the destination was left unchanged. Publish a new version or fetch another one."
            )
        return props.size

    def _download_ranges(self, blob: Any, size: int, etag: str, target: Path, bar: _Progress) -> str:
        """Download ``size`` bytes in concurrent ranges into ``target`` and return their sha256.

        Workers write ranges at their offsets; this thread hashes the file in order as the prefix
        of completed ranges grows, so hashing overlaps the transfer and memory stays at about
        ``concurrency x chunk_size`` whatever the model's size.
        """
        chunk = self.chunk_size
        done: dict[int, int] = {}
        state = {"contiguous": 0}
        cond = threading.Condition()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            def fetch_range(offset: int) -> None:
                length = min(chunk, size - offset)
                # readinto() hands the response body straight to the writer: one buffer per worker.
                writer = _OffsetWriter(fd, offset)
                blob.download_blob(
                    offset=offset, length=length, etag=etag,
                    match_condition=MatchConditions.IfNotModified, max_concurrency=1,
                ).readinto(writer)
                if writer.written != length:
                    raise IntegrityError(f"short read at offset {offset}: {writer.written} of {length} bytes")
                bar.update(length)
                with cond:
                    done[offset] = length
                    while state["contiguous"] in done:
                        state["contiguous"] += done.pop(state["contiguous"])
                    cond.notify_all()

            digest = hashlib.sha256()
            hashed = 0
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="fetch") as pool:
                futures = [pool.submit(fetch_range, off) for off in range(0, size, chunk)]
                for f in futures:
                    f.add_done_callback(lambda _f: _notify(cond))
                try:
                    with open(target, "rb", buffering=0) as reader:
                        while hashed < size:
                            with cond:
                                while state["contiguous"] <= hashed and not any(
                                    f.done() and f.exception() for f in futures
                                ):
                                    cond.wait(timeout=1.0)
                                ready = state["contiguous"]
                            failed = [f for f in futures if f.done() and f.exception()]
                            if failed:
                                raise failed[0].exception()  # type: ignore[misc]
                            while hashed < ready:
                                piece = os.pread(reader.fileno(), min(_IO_CHUNK, ready - hashed), hashed)
                                digest.update(piece)
                                hashed += len(piece)
                finally:
                    for f in futures:
                        f.cancel()
            os.fsync(fd)
        finally:
            os.close(fd)
        return digest.hexdigest()

    # -- errors -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _azure_errors(self) -> Iterator[None]:
        """Translate the SDK's exceptions into the store's, naming the account URL only."""
        try:
            yield
        except ModelStoreError:
            raise
        except ClientAuthenticationError as exc:
            raise AccessDenied(self._denied_message(exc)) from None
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise NotFound(
                    f"container '{self.container_name}' does not exist at {self.account_url}: "
                    "create it with `modelship-models publish --create-container DIR` "
                    "or through the stack that owns the storage account"
                ) from None
            raise NotFound(f"not found in {self.where}: {_first_line(exc)}") from None
        except HttpResponseError as exc:
            if exc.status_code in (401, 403):
                raise AccessDenied(self._denied_message(exc)) from None
            raise ModelStoreError(
                f"the storage service at {self.account_url} failed: {_first_line(exc)}"
            ) from None
        except ServiceRequestError as exc:
            raise ModelStoreError(
                f"cannot reach {self.account_url}: {_first_line(exc)}; is the account URL right "
                "and the network (or the Azurite emulator) up?"
            ) from None

    def _denied_message(self, exc: Exception) -> str:
        if type(exc).__name__ == "CredentialUnavailableError":
            return (
                f"no Azure credential available for {self.account_url}: sign in with `az login`, "
                "or run with a workload or managed identity"
            )
        return (
            f"access to {self.where} was denied ({_first_line(exc)}): the identity needs "
            "'Storage Blob Data Contributor' (publish) or 'Storage Blob Data Reader' (list, fetch) "
            "on the account, or the emulator connection string is wrong"
        )


def _container_client(service: BlobServiceClient, container: str) -> ContainerClient:
    # Container names: 3-63 lowercase letters, digits and single hyphens.
    if not (3 <= len(container) <= 63) or not all(c.islower() or c.isdigit() or c == "-" for c in container) \
            or container.startswith("-") or container.endswith("-") or "--" in container:
        raise InvalidInput(
            f"container name {container!r} is not valid: use 3-63 lowercase letters, digits and "
            "single hyphens, starting and ending with a letter or digit"
        )
    return service.get_container_client(container)


# A SAS signature as the SDK or urllib3 may quote it in a message ("... with url: /models?...&sig=...");
# the other SAS fields (expiry, permissions) are not secret.
_SAS_SIGNATURE = re.compile(r"(?i)\bsig=[^&\s'\"]*")


def _first_line(exc: Exception) -> str:
    """First line of an SDK error, with any SAS signature redacted."""
    text = str(getattr(exc, "reason", None) or getattr(exc, "message", None) or str(exc)).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return _SAS_SIGNATURE.sub("sig=<redacted>", line)


class _OffsetWriter:
    """A write-only, non-seekable stream that writes at a fixed file offset onwards (``pwrite``)."""

    def __init__(self, fd: int, offset: int):
        self._fd = fd
        self._offset = offset
        self.written = 0

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], self._offset + self.written + done)
        self.written += done
        return done

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


def _notify(cond: threading.Condition) -> None:
    with cond:
        cond.notify_all()


def _check_dest(dest: Path) -> None:
    """Refuse a destination that is not (yet) a model directory: never replace unrelated files."""
    if not dest.exists() and not dest.is_symlink():
        return
    if not dest.is_dir() or dest.is_symlink():
        raise InvalidInput(f"destination {dest} exists and is not a directory; pass a model directory path")
    entries = list(dest.iterdir())
    if entries and not (dest / MANIFEST_FILE).is_file():
        raise InvalidInput(
            f"destination {dest} is a non-empty directory without {MANIFEST_FILE}; refusing to replace "
            "it. Pass a new path, an empty directory or an existing model directory"
        )


def _populate_cache(source: Path, cached: Path) -> None:
    """Copy a verified model file into the cache atomically; a failure only costs the cache."""
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{cached.name}.", dir=cached.parent)
        with os.fdopen(fd, "wb") as dst, open(source, "rb") as src:
            shutil.copyfileobj(src, dst, _IO_CHUNK)
        os.replace(tmp, cached)
    except OSError as exc:
        log.warning("could not add %s to the cache: %s", cached, exc)
        with contextlib.suppress(Exception):
            os.unlink(tmp)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2_exchange() -> Callable[[Path, Path], bool] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]

    def exchange(a: Path, b: Path) -> bool:
        if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
            return True
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            return False
        raise OSError(err, os.strerror(err), str(b))

    return exchange


_exchange = _renameat2_exchange()


def _swap_into_place(staging: Path, dest: Path) -> None:
    """Make ``staging`` become ``dest``. Afterwards ``staging`` holds the old contents (or is gone)."""
    if not dest.exists():
        os.rename(staging, dest)
        return
    # Linux: swap both directories in one atomic step; readers never see dest missing.
    if _exchange is not None and _exchange(staging, dest):
        return
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    os.rename(dest, old)
    try:
        os.rename(staging, dest)
    except OSError:
        os.rename(old, dest)
        raise
    os.rename(old, staging)
