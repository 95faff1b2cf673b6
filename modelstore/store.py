"""Publish, list and fetch versioned model directories in an Azure Blob Storage container.

Blob layout, per model ``NAME``::

    NAME/VERSION/<model file>     the ONNX file, committed first (create-only)
    NAME/VERSION/manifest.json    committed LAST (create-only): a version with a manifest is complete
    NAME/latest.json              the pointer: current version + the history of every publish

A version is visible only through its manifest, and a publish writes the manifest only once the
model blob holds bytes it has hashed itself and found equal to the manifest: the file is staged
as blocks while it is hashed and committed only if the digest matches. A model blob without a
manifest is the leftover of an interrupted publish, never a version: list, show and fetch do not
see it, and the next publish of that version deletes it and uploads again. No metadata of an
earlier attempt is ever trusted.

Versions are immutable: both blobs of a version are written with ``If-None-Match: *``, so a second
publish of the same version fails on the service side, not on a racy client-side check. Between
its commit and its manifest a publisher holds a lease on the model blob, and a leftover is deleted
only under a lease and after re-checking that no manifest appeared, so two publishers of one
version cannot delete each other's upload. The pointer is rewritten with ``If-Match: <etag>`` and
re-read on conflict, so concurrent publishers of different versions cannot lose history entries.

Fetches download concurrent byte ranges pinned to the blob's ETag, hash them in order while they
arrive, and swap a fully verified staging directory into place (``localdir``), so the destination
is either the old model or the new verified one, never a mix. A local cache keyed by sha256 makes a
repeated fetch of an unchanged model transfer no bytes.

Module map: ``transfer`` moves bytes, ``localdir`` owns the destination and the cache,
``connection`` bounds every wait and maps the SDK's errors; this module holds the store's rules.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import logging
import os
import random
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    IncompleteReadError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from modelship_contract.manifest import (
    MANIFEST_FILE,
    ManifestError,
    ModelManifest,
    is_alias_name,
    load_model_dir,
    validate_name,
    validate_version,
)
from modelstore import localdir, transfer
from modelstore.connection import BoundedRetry, ErrorMap, client_options, public_url, resolve_timeout
from modelstore.errors import (
    AlreadyExists,
    Busy,
    IntegrityError,
    InvalidInput,
    ModelStoreError,
    NotFound,
)
from modelstore.transfer import PROGRESS_THRESHOLD, Progress

__all__ = ["DEFAULT_CACHE_DIR", "DEFAULT_CONTAINER", "LATEST", "PROGRESS_THRESHOLD", "FetchResult",
           "ModelStore", "VersionInfo", "parse_ref"]

log = logging.getLogger(__name__)

DEFAULT_CONTAINER = "models"
LATEST = "latest"
POINTER_BLOB = "latest.json"
POINTER_SCHEMA = 1
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "modelship" / "models"
MiB = 1024 * 1024
LEASE_SECONDS = 60
"""How long a publisher holds its model blob between commit and manifest (renewed once), and how
long a crashed publisher's leftover stays locked before the next publish may remove it."""
_EMULATOR_ACCOUNT = "devstoreaccount1"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


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


def _container_client(service: BlobServiceClient, container: str) -> ContainerClient:
    # Container names: 3-63 lowercase letters, digits and single hyphens.
    if not (3 <= len(container) <= 63) or not all(c.islower() or c.isdigit() or c == "-" for c in container) \
            or container.startswith("-") or container.endswith("-") or "--" in container:
        raise InvalidInput(
            f"container name {container!r} is not valid: use 3-63 lowercase letters, digits and "
            "single hyphens, starting and ending with a letter or digit"
        )
    return service.get_container_client(container)


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
        options = client_options(resolve_timeout(timeout))
        try:
            service = BlobServiceClient.from_connection_string(connection_string, **options)
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
        cls, url: str, container: str = DEFAULT_CONTAINER, credential: Any = None,
        timeout: float | None = None, **kwargs: Any,
    ) -> ModelStore:
        """For Azure: ``credential`` defaults to ``DefaultAzureCredential`` (workload identity,
        managed identity, ``az login``); account keys are deliberately not accepted here."""
        parts = urlsplit(url or "")
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
            raise InvalidInput(
                f"account URL {public_url(url or '')!r} is not valid: use "
                "https://<account>.blob.core.windows.net (no SAS or query string)"
            )
        # The SDK sends an Entra ID token over https only; it would refuse plain http at the first
        # request with a ValueError. Only a key-style credential may talk http to a loopback emulator.
        token = credential is None or hasattr(credential, "get_token")
        if parts.scheme == "http" and (token or parts.hostname not in _LOOPBACK):
            raise InvalidInput(
                f"account URL {url!r} must use https: Entra ID sign-in is never sent over plain http. "
                "Use https://<account>.blob.core.windows.net, or AZURE_STORAGE_CONNECTION_STRING "
                "for the Azurite emulator"
            )
        timeout = resolve_timeout(timeout)
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        service = BlobServiceClient(url, credential=credential, **client_options(timeout))
        return cls(_container_client(service, container), account_url=url, **kwargs)

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
            meta = {
                "sha256": manifest.sha256,
                "size": str(manifest.size),
                "model_file": manifest.model_file,
                "publisher": publisher,
                "published_at": _now(),
                "signer": f"sha256:{signer[:16]}",
            }
            model_blob = self._container.get_blob_client(f"{prefix}/{manifest.model_file}")
            self._remove_leftover(manifest, model_blob, manifest_blob)
            etag = self._upload_model_file(manifest, model_blob, model_dir / manifest.model_file, meta)
            lease = self._hold(manifest, model_blob, etag, manifest_blob)
            held_since = time.monotonic()
            try:
                # Overwritable, and written under the lease: until the manifest exists the version is
                # not complete, and only the lease holder may complete it.
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
                if time.monotonic() - held_since >= LEASE_SECONDS - 1:
                    self._check_still_ours(manifest, model_blob, etag, manifest_blob)
            finally:
                with contextlib.suppress(Exception):
                    lease.release()
            record = {k: meta[k] for k in ("sha256", "model_file", "publisher", "published_at")}
            record.update(version=manifest.version, size=manifest.size)
            self._move_latest(manifest.name, record)
        log.info("published %s (%d bytes) to %s", manifest.ref, manifest.size, self.where)
        return manifest

    def _remove_leftover(self, manifest: ModelManifest, blob: Any, manifest_blob: Any) -> None:
        """Delete a model file that has no manifest: an interrupted publish's, never a version.

        Its bytes and metadata are not trusted, whatever they say: the file is uploaded again.
        The delete happens under a lease, after checking again that no manifest appeared, so a
        publisher that is still alive (it holds the lease until its manifest exists) is never hit.
        """
        try:
            props = blob.get_blob_properties()
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise
            return
        try:
            lease = blob.acquire_lease(lease_duration=LEASE_SECONDS, etag=props.etag,
                                       match_condition=MatchConditions.IfNotModified)
        except HttpResponseError as exc:
            if exc.status_code in (404, 409, 412):  # gone, leased by a live publisher, or replaced
                raise self._busy_or_exists(manifest, manifest_blob) from None
            raise
        try:
            if manifest_blob.exists():
                raise self._already_exists(manifest)
            blob.delete_blob(lease=lease)
        except BaseException:
            with contextlib.suppress(Exception):
                lease.release()
            raise
        log.warning("removed %s (%d bytes without a manifest, left by an interrupted publish; never a "
                    "version); uploading it again", blob.blob_name, props.size)

    def _upload_model_file(self, manifest: ModelManifest, blob: Any, path: Path, meta: dict[str, str]) -> str:
        """Stage the file as blocks while hashing it; commit (create-only) only if it matches."""
        bar = Progress(manifest.size, f"upload {manifest.ref}", self.progress)
        try:
            blocks, digest, size = transfer.upload_blocks(
                blob, path, block_size=self.chunk_size, concurrency=min(self.concurrency, 4), bar=bar,
                on_block=self._reset_retry_window,
            )
        except OSError as exc:
            raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}; nothing was published") from None
        finally:
            bar.close()
        if (digest, size) != (manifest.sha256, manifest.size):
            raise IntegrityError(
                f"{path} changed while it was being uploaded (read {size} bytes with sha256 {digest}; "
                f"{MANIFEST_FILE} says {manifest.size} bytes, {manifest.sha256}). Nothing was published "
                "and nothing was committed to the store: check the model directory and publish again"
            )
        try:
            committed = blob.commit_block_list(
                blocks, metadata=meta, if_none_match="*",
                content_settings=ContentSettings(content_type="application/octet-stream"),
            )
        except ResourceExistsError:
            # Another publisher of this version committed its file after our leftover check.
            raise self._busy_or_exists(manifest) from None
        return committed["etag"]

    def _hold(self, manifest: ModelManifest, blob: Any, etag: str, manifest_blob: Any) -> Any:
        """Lease our committed model file until its manifest is written, so no one removes it."""
        try:
            return blob.acquire_lease(lease_duration=LEASE_SECONDS, etag=etag,
                                      match_condition=MatchConditions.IfNotModified)
        except HttpResponseError as exc:
            if exc.status_code in (404, 409, 412):
                raise self._busy_or_exists(manifest, manifest_blob) from None
            raise

    def _refuse_alias_name(self, manifest: ModelManifest) -> None:
        """``NAME@X`` must mean one thing: a version may not take the name of an existing alias."""
        from modelstore.aliases import Aliases

        if is_alias_name(manifest.version) and Aliases(self).read(manifest.name, manifest.version)[0]:
            raise InvalidInput(
                f"{manifest.ref}: '{manifest.version}' is an alias of '{manifest.name}'; "
                "pick a version that is not an alias name"
            )

    def _check_still_ours(self, manifest: ModelManifest, blob: Any, etag: str, manifest_blob: Any) -> None:
        """After a manifest write slow enough for the lease to lapse: withdraw it if the file changed."""
        try:
            same = blob.get_blob_properties().etag == etag
        except ResourceNotFoundError:
            same = False
        if not same:
            manifest_blob.delete_blob()
            raise self._busy_or_exists(manifest, manifest_blob)

    def _already_exists(self, manifest: ModelManifest) -> AlreadyExists:
        return AlreadyExists(
            f"{manifest.ref} is already published in {self.where} and versions are immutable: "
            "bump 'version' in manifest.json and publish again"
        )

    def _busy_or_exists(self, manifest: ModelManifest, manifest_blob: Any = None) -> ModelStoreError:
        manifest_blob = manifest_blob or self._container.get_blob_client(
            f"{manifest.name}/{manifest.version}/{MANIFEST_FILE}")
        if manifest_blob.exists():
            return self._already_exists(manifest)
        return Busy(
            f"another publish of {manifest.ref} to {self.where} is in progress (it holds "
            f"{manifest.name}/{manifest.version}/{manifest.model_file}); nothing was published. When it "
            f"ends, `modelship-models show {manifest.ref}` tells whether it succeeded. If that publisher "
            f"crashed, its hold expires within {LEASE_SECONDS} s: publish again then"
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

        On any failure ``dest`` is left exactly as it was. Bad references, destinations and cache
        directories are refused before any network call.
        """
        parse_ref(ref)
        dest = Path(dest).absolute()
        localdir.check_dest(dest)
        cache = localdir.check_cache_dir(cache_dir)
        with localdir.staging_for(dest) as staging:
            manifest, raw_manifest = self.resolve(ref)
            self._download_signature(manifest, staging)  # an unsigned version fails before the download
            target = staging / manifest.model_file
            cached = cache / manifest.sha256 if cache else None
            cache_hit = cached is not None and localdir.copy_from_cache(
                cached, target, manifest.sha256, manifest.size)
            transferred = 0
            if not cache_hit:
                transferred = self._download_model(manifest, target)
                if cached is not None:
                    localdir.populate_cache(target, cached)
            (staging / MANIFEST_FILE).write_bytes(raw_manifest)
            from modelstore import signing

            signer = signing.verify_fetched(staging, manifest.ref, self.where, self.trusted_keys)
            localdir.swap_into_place(staging, dest)
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
            bar = Progress(props.size, f"fetch {manifest.ref}", self.progress)
            try:
                digest = transfer.download(blob, props.size, props.etag, target,
                                           concurrency=self.concurrency, bar=bar)
            except ResourceModifiedError:
                raise ModelStoreError(
                    f"{blob_name} changed while it was being downloaded; fetch again"
                ) from None
            except (ServiceRequestError, ServiceResponseError, IncompleteReadError) as exc:
                raise self._errors.unreachable(exc, self._downloading(manifest)) from None
            except HttpResponseError as exc:
                if exc.status_code is not None:
                    raise
                # The SDK gave up re-requesting a range whose body kept breaking off.
                raise self._errors.unreachable(exc, self._downloading(manifest)) from None
            finally:
                bar.close()
        if digest != manifest.sha256:
            raise IntegrityError(
                f"sha256 mismatch for {manifest.ref} from {self.where}: downloaded {digest}, "
                f"manifest says {manifest.sha256}. The stored model is corrupt or was tampered with; "
                "the destination was left unchanged. Publish a new version or fetch another one."
            )
        return props.size

    @staticmethod
    def _downloading(manifest: ModelManifest) -> str:
        return f" while downloading {manifest.ref} (the destination was left unchanged)"
