"""A cache hit trusts what it verified before: no re-hash while the cached file is untouched.

The cache records, beside each verified file, its sha256 with the file's size, mtime and inode;
a hit whose file still has them is linked into place without reading it. Any write to the cached
file changes its mtime, and the next hit hashes it again (and refetches it if it is corrupt).
"""

from __future__ import annotations

import hashlib
import os

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
