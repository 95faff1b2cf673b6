"""Interrupted publishes against a real Azurite: a leftover never becomes a version, and never blocks one.

A crashed or failed publish can leave ``NAME/VERSION/<model file>`` committed without a manifest.
These tests leave one deterministically, the way such an attempt does (bytes plus the metadata it
wrote), instead of racing a large upload.
"""

from __future__ import annotations

import pytest
from azure.storage.blob import BlobServiceClient

import modelstore.publish as publish_module
from modelship_contract.manifest import load_model_dir
from modelstore import IntegrityError, NotFound
from modelstore.cli import main
from modelstore.errors import Busy

pytestmark = pytest.mark.azurite


def container_client(azurite, container: str):
    return BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(container)


def leave_leftover(azurite, container, manifest, data: bytes, **metadata: str) -> None:
    """What an attempt that died between its model file and its manifest leaves behind."""
    meta = {"sha256": manifest.sha256, "size": str(manifest.size), "model_file": manifest.model_file,
            "publisher": "crashed@host", "published_at": "2025-01-01T00:00:00.000Z", **metadata}
    container_client(azurite, container).upload_blob(
        f"{manifest.name}/{manifest.version}/{manifest.model_file}", data, metadata=meta)


def test_a_leftover_whose_metadata_claims_the_right_sha256_is_never_trusted(
    store, make_model, azurite, container, tmp_path
):
    # The crashed attempt wrote the manifest's sha256 into the metadata, but the bytes differ
    # (the file changed under it). Trusting that metadata made a version that no fetch could pass.
    src, manifest = make_model("digits", "1")
    store.publish(make_model("digits", "0")[0])
    good = (src / "model.onnx").read_bytes()
    leave_leftover(azurite, container, manifest, good[:-1] + bytes([good[-1] ^ 0xFF]))

    store.publish(src)

    assert store.latest("digits").version == "1"
    stored = container_client(azurite, container).get_blob_client("digits/1/model.onnx")
    assert stored.download_blob().readall() == good
    result = store.fetch("digits@1", tmp_path / "m")
    assert load_model_dir(tmp_path / "m") == manifest == result.manifest


def test_a_leftover_is_not_a_version_and_the_next_publish_replaces_it(
    store, make_model, azurite, container, store_env, tmp_path, capsys
):
    src, manifest = make_model("digits", "1")
    store.publish(make_model("digits", "0")[0])
    leave_leftover(azurite, container, manifest, b"junk from a different model", sha256="0" * 64)

    # One consistent state: not a version anywhere.
    assert [v.version for v in store.versions("digits")] == ["0"]
    with pytest.raises(NotFound, match="has no version '1'"):
        store.resolve("digits@1")
    assert main(["show", "digits@1"]) == 3
    capsys.readouterr()

    # ...and the documented way out: publishing that version replaces the leftover.
    assert main(["publish", str(src)]) == 0
    captured = capsys.readouterr()
    assert "left by an interrupted publish" in captured.err
    assert "published digits@1" in captured.out
    assert [v.version for v in store.versions("digits")] == ["0", "1"]
    assert main(["fetch", "digits@1", str(tmp_path / "m"), "--no-cache"]) == 0
    assert load_model_dir(tmp_path / "m") == manifest


def test_a_file_that_changes_during_upload_commits_nothing_and_a_retry_publishes_it(
    store, make_model, azurite, container, monkeypatch, tmp_path
):
    # The file is valid when publish checks it, then changes before its bytes are read for upload.
    src, manifest = make_model("digits", "1")
    store.publish(make_model("digits", "0")[0])
    model = src / "model.onnx"
    good = model.read_bytes()
    checked = publish_module.load_model_dir_bytes

    def check_then_change(path):
        result = checked(path)
        model.write_bytes(good[::-1])
        return result

    monkeypatch.setattr(publish_module, "load_model_dir_bytes", check_then_change)
    with pytest.raises(IntegrityError, match=r"changed while it was being uploaded .* nothing was committed"):
        store.publish(src)
    monkeypatch.undo()

    names = [b.name for b in container_client(azurite, container).list_blobs(name_starts_with="digits/1/")]
    assert names == [], "a failed publish left a blob behind"
    assert store.latest("digits").version == "0"

    model.write_bytes(good)
    store.publish(src)
    assert store.latest("digits").version == "1"
    store.fetch("digits@1", tmp_path / "m")
    assert load_model_dir(tmp_path / "m") == manifest


def test_a_publish_still_in_progress_is_never_removed(store, make_model, azurite, container):
    # A live publisher holds a lease on its committed file until its manifest exists.
    src, manifest = make_model("digits", "1")
    store.publish(make_model("digits", "0")[0])
    data = (src / "model.onnx").read_bytes()
    leave_leftover(azurite, container, manifest, data)
    blob = container_client(azurite, container).get_blob_client("digits/1/model.onnx")
    lease = blob.acquire_lease(lease_duration=60)
    try:
        with pytest.raises(Busy, match=r"another publish of digits@1 .* is in progress"):
            store.publish(src)
        assert blob.download_blob().readall() == data, "the live publisher's file was touched"
        assert [v.version for v in store.versions("digits")] == ["0"]
    finally:
        lease.release()
    store.publish(src)  # once that publisher is gone, its leftover is replaced
    assert store.latest("digits").version == "1"


def test_the_next_fetch_removes_what_a_killed_fetch_left_beside_dest_and_in_the_cache(
    store, make_model, tmp_path
):
    # kill -9 mid-fetch leaves a staging directory beside DEST and a partial file in the cache; the
    # kernel dropped the killed fetch's lock, so the next fetch knows they are dead and removes them.
    src, manifest = make_model("digits", "1", size=2 * 1024 * 1024)
    store.publish(src)
    dest, cache = tmp_path / "deploy" / "model", tmp_path / "cache"
    store.fetch("digits", dest, cache_dir=cache)
    staging = dest.parent / ".model.k1ll3d.staging"
    staging.mkdir()
    (staging / "model.onnx").write_bytes(b"\0" * 1024 * 1024)
    partial = cache / "sha256" / f".{manifest.sha256}.k1ll3d"
    partial.write_bytes(b"\0" * 1024)
    (cache / "sha256" / manifest.sha256).unlink()  # so this fetch fills the cache again

    store.fetch("digits", dest, cache_dir=cache)

    assert sorted(p.name for p in dest.parent.iterdir()) == ["model"], "a killed fetch's staging is left"
    left = [p.name for p in (cache / "sha256").iterdir() if p.name.startswith(".")]
    assert left == [], "a killed fetch's partial cache file is left"
    assert (cache / "sha256" / manifest.sha256).is_file()
    assert load_model_dir(dest) == manifest
