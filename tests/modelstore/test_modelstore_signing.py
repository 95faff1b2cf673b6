"""Signed at publish, verified at fetch: unsigned, unknown-key and tampered versions never reach DEST."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from modelship_contract.manifest import MANIFEST_FILE, load_model_dir
from modelship_contract.signature import SIGNATURE_FILE, verify
from modelstore import ModelStore
from modelstore.cli import main
from modelstore.signing import Check, KeyPair, SignatureRefused, ensure_key

pytestmark = pytest.mark.azurite


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return ensure_key(tmp_path_factory.mktemp("other-keys"))


def blobs(azurite, container: str):
    return BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(container)


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def published(store: ModelStore, make_model, tmp_path: Path) -> tuple[Path, Path]:
    """digits@1 published and fetched into DEST (the 'running' model), digits@2 published after it."""
    src1, _ = make_model("digits", "1")
    store.publish(src1)
    dest = tmp_path / "dest" / "model"
    store.fetch("digits@1", dest)
    src2, _ = make_model("digits", "2")
    store.publish(src2)
    return src2, dest


def test_publish_signs_with_the_configured_key_and_fetch_names_the_signer(
    store: ModelStore, make_model, tmp_path: Path, signing_keys: KeyPair, azurite, container: str
) -> None:
    src, manifest = make_model("digits", "1")
    (src / "README.txt").write_text("not published")  # other files in the directory are not signed
    store.publish(src)
    sig = blobs(azurite, container).get_blob_client(f"digits/1/{SIGNATURE_FILE}")
    assert sig.get_blob_properties().metadata["signer"] == f"sha256:{signing_keys.fingerprint[:16]}"
    assert SIGNATURE_FILE not in {p.name for p in src.iterdir()}  # publish writes nothing into MODEL_DIR

    result = store.fetch("digits", tmp_path / "out")
    assert result.signer == signing_keys.short
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [manifest.model_file, MANIFEST_FILE, SIGNATURE_FILE])
    assert verify(tmp_path / "out", signing_keys.trusted_dir).fingerprint == signing_keys.fingerprint
    assert load_model_dir(tmp_path / "out") == manifest


def test_fetch_refuses_a_model_signed_by_an_unknown_key(published, azurite, container: str,
                                                         other_keys: KeyPair) -> None:
    _, dest = published
    before = tree(dest)
    stranger = ModelStore.from_connection_string(azurite.connection_string, container, progress=False,
                                                 trusted_keys=other_keys.trusted_dir)
    with pytest.raises(SignatureRefused, match=r"refusing digits@2 .*\(unknown-key\)") as info:
        stranger.fetch("digits@2", dest)
    assert info.value.check is Check.UNKNOWN_KEY and info.value.exit_code == 8
    assert tree(dest) == before


def test_fetch_refuses_a_tampered_version_even_when_its_sha256_is_consistent(
    store: ModelStore, published, azurite, container: str
) -> None:
    _, dest = published
    before = tree(dest)
    # An attacker with write access to the store swaps the model and fixes up the manifest to match.
    evil = b"evil model bytes" * 64
    cc = blobs(azurite, container)
    manifest = json.loads(cc.get_blob_client(f"digits/2/{MANIFEST_FILE}").download_blob().readall())
    manifest.update(sha256=hashlib.sha256(evil).hexdigest(), size=len(evil))
    cc.get_blob_client(f"digits/2/{manifest['model_file']}").upload_blob(evil, overwrite=True)
    cc.get_blob_client(f"digits/2/{MANIFEST_FILE}").upload_blob(json.dumps(manifest), overwrite=True)
    with pytest.raises(SignatureRefused, match=r"\(tampered\).*model\.onnx changed") as info:
        store.fetch("digits@2", dest)
    assert info.value.check is Check.TAMPERED
    assert tree(dest) == before


def test_fetch_refuses_an_unsigned_version(store: ModelStore, published, azurite, container: str,
                                           tmp_path: Path, capsys, store_env) -> None:
    _, dest = published
    before = tree(dest)
    blobs(azurite, container).get_blob_client(f"digits/2/{SIGNATURE_FILE}").delete_blob()
    with pytest.raises(SignatureRefused, match=r"\(unsigned\)"):
        store.fetch("digits@2", dest)
    assert tree(dest) == before
    # The CLI: exit code 8, the check named, no traceback.
    assert main(["fetch", "digits@2", str(dest), "--no-cache"]) == 8
    err = capsys.readouterr().err
    assert "model signature check failed (unsigned)" in err and "Traceback" not in err
    assert tree(dest) == before


def test_publish_without_a_signing_key_uploads_nothing(store: ModelStore, make_model, tmp_path: Path,
                                                       azurite, container: str) -> None:
    from modelstore import InvalidInput

    src, _ = make_model("digits", "1")
    nokey = ModelStore.from_connection_string(azurite.connection_string, container, progress=False,
                                              signing_key=tmp_path / "missing.pem")
    with pytest.raises(InvalidInput, match=r"no model signing key at .*missing\.pem.*keygen"):
        nokey.publish(src)
    assert not blobs(azurite, container).exists()  # refused before the container was even created
