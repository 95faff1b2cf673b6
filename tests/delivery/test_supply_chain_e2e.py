"""The supply chain through the real local flow: signed models refused at fetch, at image build and at
container start while the running version keeps serving; the private key in no image layer, build arg
or record; the image's SBOM pulled back from the registry by the image digest."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
import urllib.request
from pathlib import Path

import pytest

from delivery import engine, sbom, sbom_os
from delivery.build import build_image, ensure_registry
from delivery.cli import up
from delivery.rollout import read_record
from delivery.settings import DeliveryError
from delivery.smoke import run_smoke
from modelship_contract.manifest import MANIFEST_FILE
from modelstore import ModelStore
from modelstore.signing import KeyPair, ensure_key
from tests.delivery.conftest import copy_context
from tests.delivery.registry import registry_layers
from tests.delivery.sbom_parts import dpkg_packages, os_packages

pytestmark = [pytest.mark.docker, pytest.mark.azurite]


def publish(store: ModelStore, tmp_path: Path, version: str) -> None:
    from training.train_digits import train

    out = tmp_path / f"digits-{version}"
    train(out, "digits", version, source_revision="test")
    store.publish(out)


def served_version(settings) -> str:
    return run_smoke(f"http://127.0.0.1:{settings.port}", "digits", timeout=30, interval=0.5).version


@pytest.fixture(scope="module")
def deployed(deployment, tmp_path_factory) -> tuple:
    settings, store = deployment
    publish(store, tmp_path_factory.mktemp("models"), "1.0.0")
    record = up(settings, echo=False, store=store)
    return settings, store, record


def test_the_deployment_records_who_signed_the_running_model(deployed, signing_keys: KeyPair) -> None:
    settings, _, record = deployed
    assert record["model_signer"] == signing_keys.short
    assert read_record(settings)["model_signer"] == signing_keys.short
    assert served_version(settings) == "1.0.0"


def test_a_version_signed_by_another_key_is_refused_at_fetch(deployed, tmp_path: Path, azurite) -> None:
    settings, store, _ = deployed
    intruder = ModelStore.from_connection_string(
        azurite.connection_string, store.container_name, progress=False,
        signing_key=ensure_key(tmp_path / "intruder").private_key,
    )
    publish(intruder, tmp_path, "1.1.0")
    with pytest.raises(DeliveryError, match=r"model signature check failed \(unknown-key\)"):
        up(settings, echo=False, store=store)
    assert served_version(settings) == "1.0.0"


def tampered_context(settings, tmp_path: Path) -> Path:
    """A copy of the deployed build context whose model was changed after signing (sha256 kept consistent)."""
    context = copy_context(tmp_path / "app")
    shutil.copytree(settings.context / "model", context / "model")
    shutil.copytree(settings.context / "trust", context / "trust", dirs_exist_ok=True)
    doc = json.loads((context / "model" / MANIFEST_FILE).read_text())
    doc["metrics"] = {**doc.get("metrics", {}), "accuracy": 1.0}
    (context / "model" / MANIFEST_FILE).write_text(json.dumps(doc, indent=2))
    return context


def test_a_tampered_model_is_refused_at_image_build(deployed, tmp_path: Path) -> None:
    import dataclasses

    settings, _, record = deployed
    context = tampered_context(settings, tmp_path)
    refused = r"image build refused the model: model signature check failed \(tampered\).*manifest\.json"
    with pytest.raises(DeliveryError, match=refused):
        build_image(dataclasses.replace(settings, context=context), record["base_image"],
                    ensure_registry(settings), echo=False)
    assert served_version(settings) == "1.0.0"


def test_a_tampered_model_is_refused_at_container_start(deployed, tmp_path: Path) -> None:
    settings, _, record = deployed
    context = tampered_context(settings, tmp_path)
    (context / "model").chmod(0o755)
    for f in (context / "model").iterdir():
        f.chmod(0o644)
    # The deployed image, with the tampered directory where its model was: the server's own start check.
    proc = subprocess.run(
        [engine.DOCKER, "run", "--rm", "--read-only", "--user", "10001:10001", "--network", "none",
         "-v", f"{context / 'model'}:/opt/model:ro", record["image"]],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "refusing to start: model signature check failed (tampered)" in proc.stderr
    assert served_version(settings) == "1.0.0"


def registry_blob(settings, digest: str) -> bytes:
    url = f"http://127.0.0.1:{settings.registry_port}/v2/{settings.repository}/blobs/{digest}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read()


def test_the_private_key_is_in_no_layer_build_arg_or_record(deployed, signing_keys: KeyPair) -> None:
    settings, _, record = deployed
    secret_pem = signing_keys.private_key.read_bytes()
    # The base64 body of the key, line by line: a copy in any encoding-preserving form shows up.
    needles = [line for line in secret_pem.splitlines() if line and not line.startswith(b"-----")]
    assert needles
    layers = registry_layers(f"127.0.0.1:{settings.registry_port}", settings.repository,
                                    record["digest"])
    scanned = 0
    for _, digest in layers:
        data = registry_blob(settings, digest)
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
            for member in tar:
                if not member.isfile():
                    continue
                content = tar.extractfile(member).read()
                assert not any(n in content for n in needles), f"key bytes in {member.name} ({digest})"
                scanned += 1
    assert scanned > 100
    history = engine.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", record["image"]).stdout
    config = engine.docker("image", "inspect", record["image"]).stdout
    for text in (history, config, json.dumps(record), settings.record_file.read_text()):
        assert not any(n.decode() in text for n in needles)
        assert str(signing_keys.private_key) not in text
    # Only public keys went into the image's trust directory.
    trust = sorted(p.name for p in (settings.context / "trust").glob("*.pub"))
    assert trust == [f"{signing_keys.fingerprint[:16]}.pub"]


def test_the_sbom_is_pulled_back_from_the_registry_by_the_image_digest(deployed) -> None:
    import re

    settings, _, record = deployed
    registry = f"127.0.0.1:{settings.registry_port}"
    digest, bom = sbom.pull(registry, settings.repository, record["digest"])
    assert record["sbom"] == f"{registry}/{settings.repository}@{digest}"
    assert bom["bomFormat"] == "CycloneDX"
    parts = {c["bom-ref"]: next(p["value"] for p in c["properties"] if p["name"] == sbom_os.PART)
             for c in bom["components"]}
    found = {re.sub(r"[-_.]+", "-", c["name"]).lower(): c["version"] for c in bom["components"]
             if parts[c["bom-ref"]] == sbom_os.PYTHON_PART}
    pinned = {}
    for line in (settings.context / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.strip().partition("==")
            pinned[re.sub(r"[-_.]+", "-", name).lower()] = version
    # Every pinned package of the image, at its pinned version, and nothing that was not installed.
    assert found == pinned
    # Every Debian package of the image, and only those (tests/delivery/test_sbom_os.py says how).
    assert os_packages(bom) == dpkg_packages(record["image"])
    assert set(parts.values()) == {sbom_os.PYTHON_PART, sbom_os.OS_PART}
    assert record["sbom_components"] == len(pinned) + len(dpkg_packages(record["image"]))
    # Linked to this digest only: another image has no SBOM.
    other = "sha256:" + "0" * 64
    with pytest.raises(sbom.SbomError, match="no SBOM refers to"):
        sbom.pull(registry, settings.repository, other)


def registry_tags(settings) -> list[str]:
    url = f"http://127.0.0.1:{settings.registry_port}/v2/{settings.repository}/tags/list"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return sorted(json.loads(resp.read())["tags"])


def test_prod_stage_runs_the_dev_digest_with_no_rebuild(deployed, capsys) -> None:
    from delivery.promote import down_prod, prod_settings, promote, stages_status
    from delivery.services import free_port

    settings, _, record = deployed
    prod = prod_settings(settings, {"MODELSHIP_PROD_PORT": str(free_port())})
    # Only this deployment's repository: other builds may run on the same engine meanwhile.
    ours = ["images", "-q", "--no-trunc", "--filter",
            f"reference=127.0.0.1:{settings.registry_port}/{settings.repository}"]
    images_before = engine.docker(*ours).stdout.split()
    assert record["image_id"] in images_before
    tags_before = registry_tags(settings)
    try:
        promoted = promote(settings, prod)
        assert promoted["digest"] == record["digest"] and promoted["image"] == record["image"]
        assert promoted["image_id"] == record["image_id"] and promoted["stage"] == "prod"
        assert engine.container_state(prod.container)["Image"] == record["image_id"]
        assert served_version(prod) == "1.0.0" and served_version(settings) == "1.0.0"
        # No build, no push: the same image ids locally, the same tags in the registry.
        assert engine.docker(*ours).stdout.split() == images_before
        assert registry_tags(settings) == tags_before
        capsys.readouterr()
        assert stages_status(settings) == 0
        assert f"dev and prod run one digest: {record['digest']}" in capsys.readouterr().out
    finally:
        down_prod(settings)


def test_promotion_refuses_what_dev_does_not_run(deployed, tmp_path: Path) -> None:
    import dataclasses

    from delivery.promote import promote

    settings, _, _ = deployed
    nothing = dataclasses.replace(settings, instance=f"{settings.instance}-none", state_dir=tmp_path)
    with pytest.raises(DeliveryError, match="has no deployment: run `make up` first"):
        promote(nothing)
    # A record naming an image the dev stage does not run (say, one that failed its test) is refused.
    saved = settings.record_file.read_text()
    forged = {**json.loads(saved), "image_id": "sha256:" + "1" * 64}
    settings.record_file.write_text(json.dumps(forged))
    try:
        with pytest.raises(DeliveryError, match="only an image dev tested and runs can be promoted"):
            promote(settings)
    finally:
        settings.record_file.write_text(saved)
