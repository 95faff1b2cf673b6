"""The model store against a real Azurite: round trip, immutability, concurrency, integrity, errors."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import threading
from pathlib import Path

import pytest
from azure.storage.blob import BlobClient, BlobServiceClient

from delivery.azurite import connection_string
from modelship_contract.manifest import load_model_dir
from modelstore import (
    AccessDenied,
    AlreadyExists,
    IntegrityError,
    InvalidInput,
    ModelStore,
    ModelStoreError,
    NotFound,
    transfer,
)
from modelstore.cli import main
from modelstore.store import PROGRESS_THRESHOLD

pytestmark = pytest.mark.azurite


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (and the siblings beside it) with its sha256: 'untouched' made checkable."""
    out = {}
    for p in sorted(root.parent.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root.parent))] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[str(p.relative_to(root.parent)) + "/"] = ""
    return out


def container_client(azurite, container: str):
    return BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(container)


def test_round_trip_publish_list_show_fetch(store, make_model, tmp_path):
    src, manifest = make_model("digits", "1")
    assert store.publish(src) == manifest

    [info] = store.versions("digits")
    assert (info.version, info.sha256, info.size, info.latest) == ("1", manifest.sha256, manifest.size, True)
    assert info.publisher and info.published_at.endswith("Z")
    assert store.latest("digits").version == "1"
    assert store.models() == ["digits"]

    dest = tmp_path / "out" / "model"
    result = store.fetch("digits", dest, cache_dir=tmp_path / "cache")
    assert result.manifest == manifest and not result.cache_hit
    assert result.bytes_transferred == manifest.size
    assert load_model_dir(dest) == manifest
    assert (dest / "model.onnx").read_bytes() == (src / "model.onnx").read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model"], "staging left behind"
    assert dest.stat().st_mode & 0o777 == 0o755


def test_cache_hit_transfers_no_bytes_and_a_corrupt_cache_is_refetched(store, make_model, tmp_path):
    src, manifest = make_model("digits", "1", size=3 * 1024 * 1024 + 17)
    store.publish(src)
    cache = tmp_path / "cache"
    first = store.fetch("digits@1", tmp_path / "a", cache_dir=cache)
    second = store.fetch("digits@latest", tmp_path / "b", cache_dir=cache)
    assert (first.cache_hit, first.bytes_transferred) == (False, manifest.size)
    assert (second.cache_hit, second.bytes_transferred) == (True, 0)
    assert load_model_dir(tmp_path / "b") == manifest

    cached = cache / "sha256" / manifest.sha256
    data = bytearray(cached.read_bytes())
    data[100] ^= 0xFF
    cached.write_bytes(bytes(data))
    third = store.fetch("digits", tmp_path / "c", cache_dir=cache)
    assert (third.cache_hit, third.bytes_transferred) == (False, manifest.size)
    assert load_model_dir(tmp_path / "c") == manifest
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == manifest.sha256, "cache not repaired"


def test_fetch_replaces_an_existing_model_dir_and_moves_between_versions(store, make_model, tmp_path):
    src1, m1 = make_model("digits", "1")
    src2, m2 = make_model("digits", "2")
    store.publish(src1)
    store.publish(src2)
    dest = tmp_path / "model"
    store.fetch("digits@1", dest)
    assert load_model_dir(dest) == m1
    store.fetch("digits", dest)
    assert load_model_dir(dest) == m2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_versions_are_immutable(store, make_model, azurite, container):
    src, _ = make_model("digits", "1")
    store.publish(src)
    other, _ = make_model("digits", "1", data=b"a different model with the same version")
    with pytest.raises(AlreadyExists, match=r"digits@1 is already published .* bump 'version'"):
        store.publish(other)
    with pytest.raises(AlreadyExists):
        store.publish(src)
    blob = container_client(azurite, container).get_blob_client("digits/1/model.onnx")
    assert blob.download_blob().readall() == (src / "model.onnx").read_bytes()
    assert [v.version for v in store.versions("digits")] == ["1"]
    assert [h["version"] for h in store.history("digits")] == ["1"]


def test_eight_concurrent_publishers_lose_nothing(azurite, container, make_model, tmp_path):
    sources = [make_model("digits", f"1.0.{i}") for i in range(8)]
    first = ModelStore.from_connection_string(azurite.connection_string, container)
    first.publish(make_model("digits", "0")[0])
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def publish(src: Path) -> None:
        try:
            own = ModelStore.from_connection_string(azurite.connection_string, container, progress=False)
            barrier.wait()
            own.publish(src)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(src,)) for src, _ in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors

    store = ModelStore.from_connection_string(azurite.connection_string, container, progress=False)
    expected = {m.version: m for _, m in sources}
    published = {v.version: v for v in store.versions("digits") if v.version != "0"}
    assert published.keys() == expected.keys()
    for version, manifest in expected.items():
        result = store.fetch(f"digits@{version}", tmp_path / "fetched" / version)
        assert result.manifest == manifest
        assert load_model_dir(tmp_path / "fetched" / version) == manifest
    history = [h["version"] for h in store.history("digits")]
    assert sorted(history) == sorted(["0", *expected]), "a concurrent publisher's entry was lost"
    latest = store.latest("digits")
    assert latest.version in expected
    assert latest.sha256 == expected[latest.version].sha256
    assert [v.version for v in store.versions("digits") if v.latest] == [latest.version]
    assert history[-1] == latest.version, "latest is not the last publish the pointer recorded"


def test_pointer_update_retries_when_another_writer_wins_the_race(store, make_model):
    # Deterministic interleaving: right after publisher A reads the pointer, B publishes.
    store.publish(make_model("digits", "1")[0])
    src_a, _ = make_model("digits", "2")
    src_b, _ = make_model("digits", "3")
    original = store._read_pointer
    calls = {"n": 0}

    def racing_read(name):
        doc = original(name)
        calls["n"] += 1
        if calls["n"] == 1:
            ModelStore(store._container, account_url=store.account_url).publish(src_b)
        return doc

    store._read_pointer = racing_read
    store.publish(src_a)
    assert calls["n"] >= 2, "the stale ETag write was not rejected and retried"
    assert [h["version"] for h in store.history("digits")] == ["1", "3", "2"]
    assert store.latest("digits").version == "2"


def test_corrupted_blob_fails_fetch_and_leaves_dest_untouched(
    store, make_model, azurite, container, tmp_path
):
    src1, _ = make_model("digits", "1")
    src2, m2 = make_model("digits", "2", size=2 * 1024 * 1024)
    store.publish(src1)
    store.publish(src2)
    dest = tmp_path / "deploy" / "model"
    store.fetch("digits@1", dest)
    before = snapshot(dest)

    blob = container_client(azurite, container).get_blob_client("digits/2/model.onnx")
    data = bytearray(blob.download_blob().readall())
    data[len(data) // 2] ^= 0x01
    blob.upload_blob(bytes(data), overwrite=True)

    cache = tmp_path / "cache"
    expected = r"sha256 mismatch for digits@2 .* destination was left unchanged"
    with pytest.raises(IntegrityError, match=expected):
        store.fetch("digits@2", dest, cache_dir=cache)
    assert snapshot(dest) == before
    assert not (cache / "sha256" / m2.sha256).exists(), "a corrupt download entered the cache"
    with pytest.raises(IntegrityError):
        store.fetch("digits", tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


@pytest.mark.parametrize("when", ["after the size check", "after the first request"])
def test_a_blob_replaced_mid_download_fails_instead_of_mixing(
    store, make_model, azurite, container, tmp_path, monkeypatch, when
):
    # Every request is pinned to the ETag whose size the fetch checked. The blob is replaced right
    # after that check, or once the SDK's first request (8 MiB) has landed and before it asks for
    # the other ranges (it reports progress there): either way nothing of the new bytes is mixed in.
    store.publish(make_model("digits", "1")[0])
    src, _ = make_model("digits", "2", size=24 * 1024 * 1024)
    store.publish(src)
    dest = tmp_path / "deploy" / "model"
    store.fetch("digits@1", dest)
    before = snapshot(dest)
    blob = container_client(azurite, container).get_blob_client("digits/2/model.onnx")
    replaced = threading.Event()

    def replace() -> None:
        if not replaced.is_set():
            replaced.set()
            blob.upload_blob((src / "model.onnx").read_bytes()[::-1], overwrite=True)

    if when == "after the size check":
        properties = BlobClient.get_blob_properties

        def properties_then_replace(self, **kwargs):
            props = properties(self, **kwargs)
            if self.blob_name == "digits/2/model.onnx":
                replace()
            return props

        monkeypatch.setattr(BlobClient, "get_blob_properties", properties_then_replace)
    else:
        hook = transfer.Progress.hook

        def replace_then_report(bar, current, total):
            replace()
            hook(bar, current, total)

        monkeypatch.setattr(transfer.Progress, "hook", replace_then_report)
    with pytest.raises(ModelStoreError, match=r"digits/2/model\.onnx changed while it was being downloaded"):
        store.fetch("digits@2", dest)
    assert replaced.is_set()
    assert snapshot(dest) == before


def test_corrupted_blob_via_cli_exits_4_with_a_clear_message(store, make_model, azurite, container,
                                                             store_env, tmp_path, capsys):
    src, _ = make_model("digits", "1")
    store.publish(src)
    container_client(azurite, container).get_blob_client("digits/1/model.onnx").upload_blob(
        b"x" * len((src / "model.onnx").read_bytes()), overwrite=True)
    dest = tmp_path / "dest"
    assert main(["fetch", "digits", str(dest), "--no-cache", "-q"]) == 4
    err = capsys.readouterr().err
    assert "sha256 mismatch for digits@1" in err and "left unchanged" in err
    assert not dest.exists()


def test_missing_model_and_version(store, make_model, tmp_path, store_env, capsys):
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "keep").write_text("not a model dir yet")  # not a model dir: refused before any I/O
    with pytest.raises(InvalidInput, match="refusing to replace"):
        store.fetch("digits", dest)
    (dest / "keep").unlink()

    store.publish(make_model("digits", "1")[0])
    with pytest.raises(NotFound, match=r"no model 'nope' in container .* publish one with"):
        store.fetch("nope", dest)
    with pytest.raises(NotFound, match=r"model 'digits' has no version '7' .* published versions: 1"):
        store.fetch("digits@7", dest)
    assert list(dest.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["model", "src"]

    assert main(["fetch", "nope@latest", str(dest)]) == 3
    assert "no model 'nope'" in capsys.readouterr().err
    assert main(["show", "digits@7"]) == 3
    assert main(["list", "nope"]) == 3


def test_missing_container_is_reported_not_created_for_real_accounts(azurite, tmp_path, make_model):
    cs = azurite.connection_string
    store = ModelStore.from_connection_string(cs, "does-not-exist", create_container=False)
    with pytest.raises(NotFound, match=r"container 'does-not-exist' does not exist .* --create-container"):
        store.fetch("digits", tmp_path / "m")
    with pytest.raises(NotFound, match="container 'does-not-exist' does not exist"):
        store.publish(make_model("digits", "1")[0])


def test_denied_access_exits_5_names_no_secret_and_leaves_dest(azurite, container, make_model, tmp_path,
                                                                monkeypatch, capsys):
    good = ModelStore.from_connection_string(azurite.connection_string, container)
    good.publish(make_model("digits", "1")[0])
    good_key = azurite.connection_string.split("AccountKey=")[1].split(";")[0]
    wrong = azurite.connection_string.replace(good_key, "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=")
    with pytest.raises(AccessDenied, match="denied"):
        ModelStore.from_connection_string(wrong, container).fetch("digits", tmp_path / "m")
    assert not (tmp_path / "m").exists()

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", wrong)
    monkeypatch.setenv("MODELSHIP_STORE_CONTAINER", container)
    monkeypatch.delenv("MODELSHIP_STORE_URL", raising=False)
    assert main(["fetch", "digits", str(tmp_path / "m"), "-v"]) == 5
    assert main(["publish", str(make_model("digits", "2")[0]), "-v"]) == 5
    out = capsys.readouterr()
    assert "access to container" in out.err and "Storage Blob Data" in out.err
    for secret in (good_key, "d3Jvbmcta2V5", "AccountKey"):
        assert secret not in out.err + out.out


def test_cli_publish_list_show_fetch_json(store_env, make_model, tmp_path, capsys):
    src, manifest = make_model("digits", "2.0.0")
    assert main(["publish", str(src), "--json", "--publisher", "ci@pipeline"]) == 0
    assert json.loads(capsys.readouterr().out)["sha256"] == manifest.sha256

    assert main(["list", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row | {"published_at": None} == {
        "name": "digits", "version": "2.0.0", "sha256": manifest.sha256, "size": manifest.size,
        "model_file": "model.onnx", "publisher": "ci@pipeline", "latest": True, "published_at": None,
    }

    assert main(["show", "digits", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["manifest"] == manifest.to_dict() and shown["published"]["latest"] is True

    cache = tmp_path / "cache"
    for expect_hit in (False, True):
        assert main(["fetch", "digits@latest", str(tmp_path / "m"), "--cache-dir", str(cache), "--json"]) == 0
        fetched = json.loads(capsys.readouterr().out)
        got = (fetched["version"], fetched["sha256"], fetched["cache_hit"])
        assert got == ("2.0.0", manifest.sha256, expect_hit)
        assert fetched["bytes_transferred"] == (0 if expect_hit else manifest.size)

    assert main(["publish", str(src)]) == 6
    assert "already published" in capsys.readouterr().err


def test_cli_rejects_bad_input_with_exit_2(store_env, tmp_path, capsys, write_model_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["publish", str(empty)]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    bad = tmp_path / "bad"
    m = write_model_dir(bad, "digits", "1", b"abc")
    (bad / "model.onnx").write_bytes(b"abd")
    assert main(["publish", str(bad)]) == 2
    expected = f"file has {hashlib.sha256(b'abd').hexdigest()}, manifest.json says {m.sha256}"
    assert expected in capsys.readouterr().err
    assert main(["fetch", "Digits@1", str(tmp_path / "x")]) == 2
    assert "model name 'Digits' is not allowed" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["fetch", "digits", str(tmp_path / "file")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_emulator_url_is_the_only_location_logged(store_env, make_model, capsys, azurite):
    assert main(["publish", str(make_model("digits", "1")[0]), "-v"]) == 0
    err = capsys.readouterr().err
    assert azurite.blob_endpoint in err
    assert "AccountKey" not in err and connection_string(azurite.port).split("AccountKey=")[1][:20] not in err


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_large_transfers_show_progress_on_a_tty_and_quiet_silences_them(
    azurite, container, make_model, tmp_path, monkeypatch
):
    src, _ = make_model("digits", "1", size=PROGRESS_THRESHOLD + 1)
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", tty)
    loud = ModelStore.from_connection_string(azurite.connection_string, container)
    loud.publish(src)
    loud.fetch("digits", tmp_path / "a")
    assert "upload digits@1" in tty.getvalue() and "fetch digits@1" in tty.getvalue()

    quiet_tty = FakeTTY()
    monkeypatch.setattr(sys, "stderr", quiet_tty)
    ModelStore.from_connection_string(azurite.connection_string, container, progress=False).fetch(
        "digits", tmp_path / "b")
    assert quiet_tty.getvalue() == ""


def test_a_damaged_pointer_or_hand_written_manifest_is_an_integrity_error_not_a_crash(
    store, make_model, azurite, container, tmp_path
):
    store.publish(make_model("digits", "1")[0])
    cc = container_client(azurite, container)
    cc.upload_blob("digits/latest.json", json.dumps({"history": [], "latest": {"version": "1"}}),
                   overwrite=True)
    with pytest.raises(IntegrityError, match=r"pointer digits/latest.json .* is corrupt .*'latest'"):
        store.fetch("digits", tmp_path / "m")
    with pytest.raises(IntegrityError, match="is corrupt"):
        store.publish(make_model("digits", "2")[0])
    assert not (tmp_path / "m").exists()

    cc.upload_blob("other/1/manifest.json", b"{not json")  # no publish metadata: the manifest is read
    with pytest.raises(IntegrityError, match=r"manifest of other@1 in container .* is invalid"):
        store.versions("other")
