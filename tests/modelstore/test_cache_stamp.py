"""A cache hit trusts what it verified before: no re-hash while the cached file is untouched.

The cache records, beside each verified file, its sha256 with the file's size, mtime and inode;
a hit whose file still has them is linked into place without reading it. Any write to the cached
file changes its mtime, and the next hit hashes it again (and refetches it if it is corrupt).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from modelship_contract.manifest import load_model_dir
from modelstore import localdir as store_module


def test_a_verified_cache_hit_is_not_hashed_again_and_costs_no_copy(store, make_model, tmp_path, monkeypatch):
    src, manifest = make_model("digits", "1", size=2 * 1024 * 1024 + 5)
    store.publish(src)
    cache = tmp_path / "cache"
    assert not store.fetch("digits@1", tmp_path / "a", cache_dir=cache).cache_hit
    cached = cache / "sha256" / manifest.sha256
    assert cached.with_name(f"{cached.name}.verified").is_file()

    hashed: list[int] = []
    real_sha256 = hashlib.sha256

    class CountingHashlib:  # only the store's own hashing is counted (not the SDK's request signing)
        @staticmethod
        def sha256(*args):
            hashed.append(1)
            return real_sha256(*args)

    monkeypatch.setattr(store_module, "hashlib", CountingHashlib)
    hit = store.fetch("digits@1", tmp_path / "b", cache_dir=cache)
    assert (hit.cache_hit, hit.bytes_transferred, hashed) == (True, 0, [])
    assert (tmp_path / "b" / "model.onnx").stat().st_ino == cached.stat().st_ino  # a link, not a copy
    monkeypatch.undo()
    assert load_model_dir(tmp_path / "b") == manifest  # and it is the right file

    # Written since it was verified: the stamp no longer matches, so the next hit hashes it again.
    os.utime(cached, ns=(cached.stat().st_atime_ns, cached.stat().st_mtime_ns + 1_000_000_000))
    monkeypatch.setattr(store_module, "hashlib", CountingHashlib)
    again = store.fetch("digits@1", tmp_path / "c", cache_dir=cache)
    assert again.cache_hit and hashed, "a cached file changed since its check must be hashed again"


@pytest.fixture
def hashed_by_model_signing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files model-signing reads to hash them, from now on."""
    from model_signing._hashing import io

    names: list[str] = []
    real = io.SimpleFileHasher.compute

    def compute(self):
        names.append(Path(self._file).name)
        return real(self)

    monkeypatch.setattr(io.SimpleFileHasher, "compute", compute)
    return names


def test_a_fetch_checks_the_signature_without_reading_the_model_again(
        store, make_model, tmp_path, hashed_by_model_signing):
    """model-signing checks the signature on every fetch; the model's digest is the one already verified.

    On a download it is the digest computed as the bytes landed; on a hit, the stamp's. Either way
    model-signing compares the signed digest of model.onnx with it instead of reading the file.
    """
    src, manifest = make_model("digits", "1", size=2 * 1024 * 1024 + 5)
    store.publish(src)
    hashed_by_model_signing.clear()  # publish signs by reading every file
    cache = tmp_path / "cache"
    first = store.fetch("digits@1", tmp_path / "a", cache_dir=cache)
    hit = store.fetch("digits@1", tmp_path / "b", cache_dir=cache)
    assert (first.cache_hit, hit.cache_hit, hit.signer) == (False, True, first.signer)
    assert hashed_by_model_signing == []
    assert load_model_dir(tmp_path / "b") == manifest


def test_a_cache_hit_is_checked_against_the_trusted_keys_of_this_fetch(store, make_model, tmp_path, azurite):
    """No verdict is recorded: a hit with a trust set that lacks the signer is refused (unknown-key)."""
    from modelstore import signing
    from modelstore.store import ModelStore

    src, _ = make_model("digits", "1", size=1024 * 1024 + 3)
    store.publish(src)
    cache = tmp_path / "cache"
    store.fetch("digits@1", tmp_path / "a", cache_dir=cache)
    stranger = ModelStore.from_connection_string(
        azurite.connection_string, store.container_name, progress=False,
        trusted_keys=signing.ensure_key(tmp_path / "other").trusted_dir)
    with pytest.raises(signing.SignatureRefused, match=r"\(unknown-key\)"):
        stranger.fetch("digits@1", tmp_path / "b", cache_dir=cache)
    assert not (tmp_path / "b").exists()


def test_a_cache_hit_with_a_replaced_signature_is_refused(store, make_model, tmp_path):
    """The stamp vouches for the model's bytes only: a replaced signature blob is checked, and refused."""
    from modelstore import signing

    src, _ = make_model("digits", "1", size=1024 * 1024 + 3)
    store.publish(src)
    cache = tmp_path / "cache"
    store.fetch("digits@1", tmp_path / "a", cache_dir=cache)
    blob = store._container.get_blob_client(f"digits/1/{signing.SIGNATURE_FILE}")
    original = blob.download_blob().readall()
    blob.upload_blob(original.replace(b'"', b"'", 1), overwrite=True)
    with pytest.raises(signing.SignatureRefused):
        store.fetch("digits@1", tmp_path / "b", cache_dir=cache)
    assert not (tmp_path / "b").exists()
