"""Fetching a version: downloaded, verified, and swapped into place whole, or the destination untouched.

The model file comes through the SDK's concurrent download pinned to the blob's ETag and is hashed
in order while its ranges land (``transfer``); the signature is checked; then a fully verified
staging directory is swapped into place (``localdir``), so the destination is either the old
model or the new verified one, never a mix. A local cache keyed by sha256 makes a repeated fetch
of an unchanged model transfer no bytes.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from azure.core.exceptions import (
    HttpResponseError,
    IncompleteReadError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from modelship_contract.manifest import MANIFEST_FILE, ModelManifest
from modelship_contract.signature import Signer
from modelstore import localdir, transfer
from modelstore.errors import IntegrityError, ModelStoreError
from modelstore.store import ModelStore, parse_ref
from modelstore.transfer import Progress

log = logging.getLogger(__name__)


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


def fetch(store: ModelStore, ref: str, dest: Path | str, cache_dir: Path | str | None = None) -> FetchResult:
    """Download ``NAME[@VERSION|latest]`` into the model directory ``dest``, verified and atomic.

    On any failure ``dest`` is left exactly as it was. Bad references, destinations and cache
    directories are refused before any network call.
    """
    parse_ref(ref)
    dest = Path(dest).absolute()
    localdir.check_dest(dest)
    cache = localdir.check_cache_dir(cache_dir)
    with localdir.staging_for(dest) as staging:
        manifest, raw_manifest = store.resolve(ref)
        _download_signature(store, manifest, staging)  # an unsigned version fails before the download
        target = staging / manifest.model_file
        cached = cache / manifest.sha256 if cache else None
        cache_hit = cached is not None and localdir.copy_from_cache(
            cached, target, manifest.sha256, manifest.size)
        transferred = 0
        if not cache_hit:
            transferred = _download_model(store, manifest, target)
            if cached is not None:
                localdir.populate_cache(target, cached)
        (staging / MANIFEST_FILE).write_bytes(raw_manifest)
        signer = _verify_signature(store, manifest, staging, raw_manifest)
        localdir.swap_into_place(staging, dest)
    log.info("fetched %s into %s (%s, %d bytes transferred)", manifest.ref, dest,
             "cache hit" if cache_hit else "downloaded", transferred)
    return FetchResult(manifest=manifest, bytes_transferred=transferred, cache_hit=cache_hit, dest=dest,
                       signer=signer.short)


def _verify_signature(store: ModelStore, manifest: ModelManifest, staging: Path,
                      raw_manifest: bytes) -> Signer:
    """Check the staged version's signature without reading the model file a second time.

    When this runs, the staged model file's sha256 is known to be the manifest's: hashed in order as
    it downloaded, hashed while it was copied from the cache, or a cache hit on a file whose stamp
    (size, mtime, inode, device) says it is the very file verified as that sha256 and unwritten
    since. model-signing checks the signature against the trusted keys on every fetch and compares
    the signed manifest with the directory, taking these two files' digests from here (the manifest
    is hashed from the bytes written to staging) and hashing any other file itself.
    """
    from modelstore import signing

    return signing.verify_fetched(staging, manifest.ref, store.where, store.trusted_keys,
                                  model=(manifest.model_file, manifest.sha256, raw_manifest))


def _download_signature(store: ModelStore, manifest: ModelManifest, staging: Path) -> None:
    from modelstore import signing

    blob = store._container.get_blob_client(f"{manifest.name}/{manifest.version}/{signing.SIGNATURE_FILE}")
    with store._azure_errors():
        try:
            data = blob.download_blob().readall()
        except ResourceNotFoundError:
            raise signing.SignatureRefused(
                f"refusing {manifest.ref} from {store.where}: model signature check failed (unsigned): "
                f"the version has no {signing.SIGNATURE_FILE}. Publish a new version (publish signs it). "
                "The destination was left unchanged.", signing.Check.UNSIGNED,
            ) from None
    (staging / signing.SIGNATURE_FILE).write_bytes(data)


def _download_model(store: ModelStore, manifest: ModelManifest, target: Path) -> int:
    blob_name = f"{manifest.name}/{manifest.version}/{manifest.model_file}"
    blob = store._container.get_blob_client(blob_name)
    with store._azure_errors():
        try:
            props = blob.get_blob_properties()
        except ResourceNotFoundError:
            raise IntegrityError(
                f"{manifest.ref} in {store.where} has a manifest but no {manifest.model_file}; "
                "the version is damaged: publish a new version"
            ) from None
        if props.size != manifest.size:
            raise IntegrityError(
                f"{blob_name} in {store.where} is {props.size} bytes but its manifest says "
                f"{manifest.size}; refusing it (destination left unchanged)"
            )
        bar = Progress(props.size, f"fetch {manifest.ref}", store.progress)
        try:
            digest = transfer.download(blob, props.size, props.etag, target,
                                       concurrency=store.concurrency, bar=bar)
        except ResourceModifiedError:
            raise ModelStoreError(
                f"{blob_name} changed while it was being downloaded; fetch again"
            ) from None
        except (ServiceRequestError, ServiceResponseError, IncompleteReadError) as exc:
            raise store._errors.unreachable(exc, _downloading(manifest)) from None
        except HttpResponseError as exc:
            if exc.status_code is not None:
                raise
            # The SDK gave up re-requesting a range whose body kept breaking off.
            raise store._errors.unreachable(exc, _downloading(manifest)) from None
        finally:
            bar.close()
    if digest != manifest.sha256:
        raise IntegrityError(
            f"sha256 mismatch for {manifest.ref} from {store.where}: downloaded {digest}, "
            f"manifest says {manifest.sha256}. The stored model is corrupt or was tampered with; "
            "the destination was left unchanged. Publish a new version or fetch another one."
        )
    return props.size



def _downloading(manifest: ModelManifest) -> str:
    return f" while downloading {manifest.ref} (the destination was left unchanged)"
