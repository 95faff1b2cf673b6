"""Model signatures (OpenSSF model-signing): each way a model fails, named; the server's start check."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from modelship_contract.manifest import MANIFEST_FILE, read_manifest
from modelship_contract.signature import SIGNATURE_FILE, Check, SignatureError, open_signature, sign, verify
from modelstore.signing import KeyPair, ensure_key
from tests.app.modelserver_process import REPO, start_server, stop_server

SIGNATURE_SCRIPT = REPO / "modelship_contract" / "signature.py"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return ensure_key(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return ensure_key(tmp_path_factory.mktemp("other-keys"))


@pytest.fixture
def signed(model_dir: Path, keys: KeyPair, tmp_path: Path) -> Path:
    """A signed copy of the session's real model."""
    out = tmp_path / "model"
    shutil.copytree(model_dir, out)
    sign(out, keys.private_key)
    return out


def check_of(model: Path, trusted: Path) -> Check:
    with pytest.raises(SignatureError) as info:
        verify(model, trusted)
    assert str(info.value).startswith(f"model signature check failed ({info.value.check.value}): ")
    return info.value.check


def test_signed_model_verifies_and_names_its_signer(signed: Path, keys: KeyPair) -> None:
    signer = verify(signed, keys.trusted_dir)
    assert signer.fingerprint == keys.fingerprint
    assert signer.short == keys.short


def test_unsigned_model_is_refused(model_dir: Path, keys: KeyPair) -> None:
    assert check_of(model_dir, keys.trusted_dir) is Check.UNSIGNED


def test_model_signed_by_another_key_is_refused(signed: Path, other_keys: KeyPair) -> None:
    with pytest.raises(SignatureError, match=r"\(unknown-key\).*signed by key sha256:") as info:
        verify(signed, other_keys.trusted_dir)
    assert info.value.check is Check.UNKNOWN_KEY


def test_model_file_changed_after_signing_is_refused(signed: Path, keys: KeyPair) -> None:
    model = signed / read_manifest(signed).model_file
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match=r"\(tampered\).*model\.onnx changed"):
        verify(signed, keys.trusted_dir)


def test_manifest_relabelled_after_signing_is_refused(signed: Path, keys: KeyPair) -> None:
    # A consistent manifest (the sha256 check passes) that claims another version: only the signature sees it.
    doc = json.loads((signed / MANIFEST_FILE).read_text())
    doc["version"] = "9.9.9"
    (signed / MANIFEST_FILE).write_text(json.dumps(doc))
    with pytest.raises(SignatureError, match=r"\(tampered\).*manifest\.json changed"):
        verify(signed, keys.trusted_dir)


def test_added_file_is_refused(signed: Path, keys: KeyPair) -> None:
    (signed / "extra.onnx").write_bytes(b"not signed")
    with pytest.raises(SignatureError, match=r"\(tampered\).*files not signed: extra\.onnx"):
        verify(signed, keys.trusted_dir)


def test_forged_signature_under_a_trusted_key_hint_is_refused(signed: Path, keys: KeyPair) -> None:
    bundle = json.loads((signed / SIGNATURE_FILE).read_text())
    sig = bundle["dsseEnvelope"]["signatures"][0]
    sig["sig"] = sig["sig"][:-8] + ("AAAAAAA=" if not sig["sig"].endswith("AAAAAAA=") else "BBBBBBB=")
    (signed / SIGNATURE_FILE).write_text(json.dumps(bundle))
    assert check_of(signed, keys.trusted_dir) in (Check.BAD_SIGNATURE, Check.UNREADABLE)


def test_unreadable_signature_and_missing_trust_are_named(signed: Path, keys: KeyPair,
                                                          tmp_path: Path) -> None:
    assert check_of(signed, tmp_path / "no-keys") is Check.NO_TRUSTED_KEY
    (signed / SIGNATURE_FILE).write_text("{not json")
    assert check_of(signed, keys.trusted_dir) is Check.UNREADABLE


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_digests_the_caller_computed_stand_in_for_the_files(signed: Path, keys: KeyPair) -> None:
    """The server and the store hash the model once and hand model-signing that digest: it is compared."""
    model = read_manifest(signed).model_file
    given = {model: sha256_of(signed / model), MANIFEST_FILE: sha256_of(signed / MANIFEST_FILE)}
    checked = open_signature(signed, keys.trusted_dir)
    assert checked.reuses_sha256  # what sign() writes: whole files, sha256
    assert checked.check(given) == verify(signed, keys.trusted_dir)
    # The file on disk is intact: only the digest handed in differs, and model-signing refuses it.
    with pytest.raises(SignatureError, match=r"\(tampered\).*model\.onnx changed") as info:
        checked.check({**given, model: "0" * 64})
    assert info.value.check is Check.TAMPERED


def test_files_not_handed_in_are_still_hashed_and_compared(signed: Path, keys: KeyPair) -> None:
    model = read_manifest(signed).model_file
    given = {model: sha256_of(signed / model), MANIFEST_FILE: sha256_of(signed / MANIFEST_FILE)}
    (signed / "extra.onnx").write_bytes(b"not signed")
    with pytest.raises(SignatureError, match=r"\(tampered\).*files not signed: extra\.onnx"):
        open_signature(signed, keys.trusted_dir).check(given)
    (signed / "extra.onnx").unlink()
    (signed / MANIFEST_FILE).unlink()
    with pytest.raises(SignatureError, match=r"\(tampered\).*signed files missing: manifest\.json"):
        open_signature(signed, keys.trusted_dir).check({model: given[model]})


def test_the_signature_is_refused_before_any_file_is_read(signed: Path, other_keys: KeyPair) -> None:
    (signed / read_manifest(signed).model_file).unlink()  # nothing to read: the key decides first
    with pytest.raises(SignatureError, match=r"\(unknown-key\)"):
        open_signature(signed, other_keys.trusted_dir)


def test_script_the_image_build_runs_exits_7_naming_the_check(signed: Path, other_keys: KeyPair,
                                                              keys: KeyPair, tmp_path: Path) -> None:
    # The Dockerfile copies this one file to /opt/verify/ and runs it with no package around it, as here.
    script = tmp_path / "verify" / "signature.py"
    script.parent.mkdir()
    shutil.copy(SIGNATURE_SCRIPT, script)
    ok = subprocess.run([sys.executable, str(script), "verify", str(signed), "--trusted-keys",
                         str(keys.trusted_dir)], capture_output=True, text=True, timeout=120, cwd="/")
    assert ok.returncode == 0, ok.stderr
    assert keys.short in ok.stdout
    bad = subprocess.run([sys.executable, str(script), "verify", str(signed), "--trusted-keys",
                          str(other_keys.trusted_dir)], capture_output=True, text=True, timeout=120, cwd="/")
    assert bad.returncode == 8
    assert "refusing the model: model signature check failed (unknown-key)" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_server_refuses_to_start_with_a_tampered_model(signed: Path, keys: KeyPair, tmp_path: Path) -> None:
    # Tampered consistently: the file's sha256 matches its manifest, so only the signature check can catch it.
    doc = json.loads((signed / MANIFEST_FILE).read_text())
    doc["metrics"] = {"accuracy": 1.0}
    (signed / MANIFEST_FILE).write_text(json.dumps(doc))
    server = start_server(signed, tmp_path / "server.log", env={"MODELSHIP_TRUST_DIR": str(keys.trusted_dir)},
                          wait=False)
    try:
        assert server.process.wait(timeout=60) == 2
    finally:
        stop_server(server)
    log = server.log_path.read_text()
    assert "refusing to start: model signature check failed (tampered)" in log
    assert "Traceback" not in log


def test_server_starts_with_a_signed_model_and_logs_the_signer(signed: Path, keys: KeyPair,
                                                               tmp_path: Path) -> None:
    server = start_server(signed, tmp_path / "server.log", env={"MODELSHIP_TRUST_DIR": str(keys.trusted_dir)})
    try:
        assert httpx.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200
    finally:
        stop_server(server)
    verified = [e for e in server.log_entries() if e.get("msg") == "model verified and loaded"]
    assert verified and verified[0]["signer"] == keys.short
