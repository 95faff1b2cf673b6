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


def test_a_cache_hit_reuses_the_signature_check_made_on_the_same_inputs(
        store, make_model, tmp_path, monkeypatch):
    """model-signing reads every byte of the model: a hit on unchanged inputs reuses its verdict."""
    from modelstore import signing

    src, _ = make_model("digits", "1", size=2 * 1024 * 1024 + 5)
    store.publish(src)
    cache = tmp_path / "cache"
    first = store.fetch("digits@1", tmp_path / "a", cache_dir=cache)
    checks: list[Path] = []
    real_verify = signing.verify_fetched

    def counting_verify(model_dir, *args, **kwargs):
        checks.append(model_dir)
        return real_verify(model_dir, *args, **kwargs)

    monkeypatch.setattr(signing, "verify_fetched", counting_verify)
    hit = store.fetch("digits@1", tmp_path / "b", cache_dir=cache)
    assert (hit.cache_hit, hit.signer, checks) == (True, first.signer, [])

    # Another trusted key set is another input: the signature is checked again (and still passes).
    trusted = Path(store.trusted_keys) if store.trusted_keys is not None else signing.trusted_keys_path()
    assert trusted.is_dir(), trusted
    extra = trusted / "zz-extra.pub"
    extra.write_bytes(signing.trusted_key_files(trusted)[0].read_bytes())
    again = store.fetch("digits@1", tmp_path / "c", cache_dir=cache)
    extra.unlink()
    assert again.cache_hit and len(checks) == 1, "a changed trust set must re-run the signature check"


def test_a_recorded_check_never_covers_another_signature(store, make_model, tmp_path):
    """The memo names the signature's digest: a replaced signature blob is checked, and refused."""
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
