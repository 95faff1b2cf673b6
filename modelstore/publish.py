"""Publishing a version: a model file whose stored bytes are known to match its manifest, or nothing.

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
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob import ContentSettings

from modelship_contract.manifest import (
    MANIFEST_FILE,
    ManifestError,
    ModelManifest,
    is_alias_name,
    load_model_dir_bytes,
)
from modelstore import transfer
from modelstore.connection import backoff, write_json_if_unchanged
from modelstore.errors import AlreadyExists, Busy, IntegrityError, InvalidInput, ModelStoreError
from modelstore.store import (
    POINTER_BLOB,
    POINTER_SCHEMA,
    ModelStore,
    _now,
    _validate_store_version,
    default_publisher,
)
from modelstore.transfer import Progress

log = logging.getLogger(__name__)

LEASE_SECONDS = 60
"""How long a publisher holds its model blob between commit and manifest (renewed once), and how
long a crashed publisher's leftover stays locked before the next publish may remove it."""


def publish(store: ModelStore, model_dir: Path | str, publisher: str | None = None) -> ModelManifest:
    """Upload a validated model directory as a new immutable version and move ``latest`` to it."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InvalidInput(f"model directory {model_dir} does not exist or is not a directory")
    try:
        manifest, raw_manifest = load_model_dir_bytes(model_dir)
        _validate_store_version(manifest.version)
    except ManifestError as exc:
        raise InvalidInput(f"model directory {model_dir} is not valid: {exc}") from None
    publisher = publisher or default_publisher()
    prefix = f"{manifest.name}/{manifest.version}"
    # Signed before anything is uploaded; the manifest is uploaded as the bytes that were signed.
    from modelstore import signing  # not at import: `python -m modelstore.signing` imports this module
    signature, signer = signing.sign_for_publish(model_dir, manifest.model_file, store.signing_key)
    with store._azure_errors():
        if store.create_container:
            with contextlib.suppress(ResourceExistsError):
                store._container.create_container()
        manifest_blob = store._container.get_blob_client(f"{prefix}/{MANIFEST_FILE}")
        if manifest_blob.exists():
            raise _already_exists(store, manifest)
        _refuse_alias_name(store, manifest)
        meta = {
            "sha256": manifest.sha256,
            "size": str(manifest.size),
            "model_file": manifest.model_file,
            "publisher": publisher,
            "published_at": _now(),
            "signer": f"sha256:{signer[:16]}",
        }
        model_blob = store._container.get_blob_client(f"{prefix}/{manifest.model_file}")
        _remove_leftover(store, manifest, model_blob, manifest_blob)
        etag = _upload_model_file(store, manifest, model_blob, model_dir / manifest.model_file, meta)
        lease = _hold(store, manifest, model_blob, etag, manifest_blob)
        held_since = time.monotonic()
        try:
            # Overwritable, and written under the lease: until the manifest exists the version is
            # not complete, and only the lease holder may complete it.
            store._container.get_blob_client(f"{prefix}/{signing.SIGNATURE_FILE}").upload_blob(
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
                raise _already_exists(store, manifest) from None
            if time.monotonic() - held_since >= LEASE_SECONDS - 1:
                _check_still_ours(store, manifest, model_blob, etag, manifest_blob)
        finally:
            with contextlib.suppress(Exception):
                lease.release()
        record = {k: meta[k] for k in ("sha256", "model_file", "publisher", "published_at")}
        record.update(version=manifest.version, size=manifest.size)
        _move_latest(store, manifest.name, record)
    log.info("published %s (%d bytes) to %s", manifest.ref, manifest.size, store.where)
    return manifest


def _remove_leftover(store: ModelStore, manifest: ModelManifest, blob: Any, manifest_blob: Any) -> None:
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
            raise _busy_or_exists(store, manifest, manifest_blob) from None
        raise
    try:
        if manifest_blob.exists():
            raise _already_exists(store, manifest)
        blob.delete_blob(lease=lease)
    except BaseException:
        with contextlib.suppress(Exception):
            lease.release()
        raise
    log.warning("removed %s (%d bytes without a manifest, left by an interrupted publish; never a "
                "version); uploading it again", blob.blob_name, props.size)


def _upload_model_file(
    store: ModelStore, manifest: ModelManifest, blob: Any, path: Path, meta: dict[str, str]
) -> str:
    """Stage the file as blocks while hashing it; commit (create-only) only if it matches."""
    bar = Progress(manifest.size, f"upload {manifest.ref}", store.progress)
    try:
        blocks, digest, size = transfer.upload_blocks(
            blob, path, block_size=store.chunk_size, concurrency=min(store.concurrency, 4), bar=bar,
            on_block=store._reset_retry_window,
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
        raise _busy_or_exists(store, manifest) from None
    return committed["etag"]


def _hold(store: ModelStore, manifest: ModelManifest, blob: Any, etag: str, manifest_blob: Any) -> Any:
    """Lease our committed model file until its manifest is written, so no one removes it."""
    try:
        return blob.acquire_lease(lease_duration=LEASE_SECONDS, etag=etag,
                                  match_condition=MatchConditions.IfNotModified)
    except HttpResponseError as exc:
        if exc.status_code in (404, 409, 412):
            raise _busy_or_exists(store, manifest, manifest_blob) from None
        raise


def _refuse_alias_name(store: ModelStore, manifest: ModelManifest) -> None:
    """``NAME@X`` must mean one thing: a version may not take the name of an existing alias."""
    from modelstore.aliases import Aliases

    if is_alias_name(manifest.version) and Aliases(store).read(manifest.name, manifest.version)[0]:
        raise InvalidInput(
            f"{manifest.ref}: '{manifest.version}' is an alias of '{manifest.name}'; "
            "pick a version that is not an alias name"
        )


def _check_still_ours(
    store: ModelStore, manifest: ModelManifest, blob: Any, etag: str, manifest_blob: Any
) -> None:
    """After a manifest write slow enough for the lease to lapse: withdraw it if the file changed."""
    try:
        same = blob.get_blob_properties().etag == etag
    except ResourceNotFoundError:
        same = False
    if not same:
        manifest_blob.delete_blob()
        raise _busy_or_exists(store, manifest, manifest_blob)


def _already_exists(store: ModelStore, manifest: ModelManifest) -> AlreadyExists:
    return AlreadyExists(
        f"{manifest.ref} is already published in {store.where} and versions are immutable: "
        "bump 'version' in manifest.json and publish again"
    )


def _busy_or_exists(store: ModelStore, manifest: ModelManifest, manifest_blob: Any = None) -> ModelStoreError:
    manifest_blob = manifest_blob or store._container.get_blob_client(
        f"{manifest.name}/{manifest.version}/{MANIFEST_FILE}")
    if manifest_blob.exists():
        return _already_exists(store, manifest)
    return Busy(
        f"another publish of {manifest.ref} to {store.where} is in progress (it holds "
        f"{manifest.name}/{manifest.version}/{manifest.model_file}); nothing was published. When it "
        f"ends, `modelship-models show {manifest.ref}` tells whether it succeeded. If that publisher "
        f"crashed, its hold expires within {LEASE_SECONDS} s: publish again then"
    )


def _move_latest(store: ModelStore, name: str, record: dict[str, Any]) -> None:
    blob = store._container.get_blob_client(f"{name}/{POINTER_BLOB}")
    for attempt in range(store.max_pointer_attempts):
        doc, etag = store._read_pointer(name)
        doc = doc or {"schema": POINTER_SCHEMA, "name": name, "history": []}
        if all(h.get("version") != record["version"] for h in doc["history"]):
            doc["history"].append(record)
        doc["latest"] = record
        doc["updated_at"] = _now()
        if write_json_if_unchanged(blob, doc, etag):
            return
        # Another publisher moved the pointer between our read and write: re-read, re-apply.
        log.debug("latest pointer of %s changed concurrently (attempt %d)", name, attempt + 1)
        backoff(attempt)
    raise ModelStoreError(
        f"{name}@{record['version']} is published, but the latest pointer could not be moved after "
        f"{store.max_pointer_attempts} concurrent updates; publish again to retry moving it"
    )
