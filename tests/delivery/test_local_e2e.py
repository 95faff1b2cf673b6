"""The main command end to end with real parts: Azurite, docker-registry, BuildKit and Docker.

The tests share one isolated deployment (module fixture) and run in order: deploy a first
model, deploy a newer one, refuse a corrupt one while the old container keeps serving, and
rebuild after a code-only change reusing the model layer.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from azure.storage.blob import BlobServiceClient

from delivery import engine
from delivery.local import DeliveryError, LocalSettings, deploy, read_record, up
from delivery.smoke import run_smoke

pytestmark = [pytest.mark.docker, pytest.mark.azurite]


def publish(store, tmp_path: Path, version: str) -> None:
    from training.train_digits import train

    out = tmp_path / f"digits-{version}"
    train(out, "digits", version, source_revision="test")
    store.publish(out)


def publish_unseen_bytes(store, tmp_path: Path, version: str) -> None:
    """Publish a version whose model bytes no cache has seen (random, with a matching manifest)."""
    import dataclasses
    import hashlib
    import os

    from modelserver.manifest import read_manifest

    out = tmp_path / f"digits-{version}"
    publish_dir = tmp_path / f"src-{version}"
    from training.train_digits import train

    manifest = train(out, "digits", version, source_revision="test")
    payload = os.urandom(manifest.size)
    publish_dir.mkdir()
    (publish_dir / manifest.model_file).write_bytes(payload)
    changed = dataclasses.replace(read_manifest(out), sha256=hashlib.sha256(payload).hexdigest())
    (publish_dir / "manifest.json").write_text(changed.to_json())
    store.publish(publish_dir)


def served_version(settings: LocalSettings) -> str:
    return run_smoke(f"http://127.0.0.1:{settings.port}", "digits", timeout=30, interval=0.5).version


def model_layer(settings: LocalSettings, record: dict) -> str:
    """Blob digest of the image layer that holds the model, read from the registry."""
    layers = engine.registry_layers(f"127.0.0.1:{settings.registry_port}", settings.repository,
                                    record["digest"])
    hits = [digest for step, digest in layers if re.search(r"COPY .*\bmodel/? ", step)]
    assert len(hits) == 1, f"expected one COPY of model/ among the layers: {layers}"
    return hits[0]


def test_publish_then_up_serves_the_new_version(deployment, tmp_path: Path) -> None:
    settings, store = deployment
    publish(store, tmp_path, "1.0.0")
    first = up(settings, echo=False, store=store)
    assert first["model_version"] == "1.0.0"
    assert served_version(settings) == "1.0.0"

    publish(store, tmp_path, "1.1.0")
    second = up(settings, echo=False, store=store)
    assert second["model_version"] == "1.1.0"
    assert served_version(settings) == "1.1.0"
    # Runs by digest, from the local registry, with the Deployment's security settings.
    state = engine.container_state(settings.container)
    assert state["Config"]["Image"] == second["image"]
    assert re.fullmatch(rf"127\.0\.0\.1:{settings.registry_port}/.+@sha256:[0-9a-f]{{64}}", second["image"])
    host = state["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert state["Config"]["User"] == "10001:10001"
    assert host["CapDrop"] == ["ALL"]
    unit = {"k": 1024, "m": 1024**2, "g": 1024**3}[settings.memory[-1]]
    assert host["Memory"] == int(settings.memory[:-1]) * unit
    assert host["NanoCpus"] == int(float(settings.cpus) * 1e9)
    assert "/tmp" in host["Tmpfs"] and "no-new-privileges" in host["SecurityOpt"]

    # Unchanged model and code: nothing rebuilt, nothing redeployed, no model bytes moved.
    again = up(settings, echo=False, store=store)
    assert again["image_id"] == second["image_id"]
    assert engine.container_state(settings.container)["Id"] == state["Id"]


def test_corrupt_model_fails_clearly_and_the_old_container_keeps_serving(
    deployment, azurite, tmp_path: Path
) -> None:
    settings, store = deployment
    if engine.container_state(settings.container) is None:  # run alone (-k): deploy a good model first
        publish(store, tmp_path, "1.9.0")
        up(settings, echo=False, store=store)
    before = engine.container_state(settings.container)
    assert before["State"]["Running"]
    version_before = served_version(settings)

    publish_unseen_bytes(store, tmp_path, "2.0.0")
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    blob = service.get_blob_client(store.container_name, "digits/2.0.0/model.onnx")
    size = blob.get_blob_properties().size
    blob.upload_blob(b"\0" * size, overwrite=True)  # same size, different bytes

    with pytest.raises(DeliveryError, match=r"cannot fetch the latest digits .*(sha256|integrity|corrupt)"):
        up(settings, echo=False, store=store)
    after = engine.container_state(settings.container)
    assert after["Id"] == before["Id"] and after["State"]["Running"]
    assert served_version(settings) == version_before


def test_a_release_that_fails_is_rolled_back_and_the_old_container_serves(deployment, tmp_path: Path) -> None:
    settings, store = deployment
    if engine.container_state(settings.container) is None:  # run alone (-k): deploy a good model first
        publish(store, tmp_path, "1.9.1")
        up(settings, echo=False, store=store)
    record = read_record(settings)
    before = engine.container_state(settings.container)
    version_before = served_version(settings)

    # An image reference that does not resolve: refused at create, the old container never stops.
    missing = record["image"].split("@")[0] + "@sha256:" + "0" * 64
    with pytest.raises(DeliveryError, match=r"cannot create a container from .* was not touched"):
        deploy(settings, missing, SimpleNamespace(manifest=SimpleNamespace(name="digits", version="x")))
    untouched = engine.container_state(settings.container)
    assert untouched["Id"] == before["Id"] and untouched["State"]["StartedAt"] == before["State"]["StartedAt"]

    # A container that starts but fails its smoke test after the swap: the old one is put back.
    wrong = SimpleNamespace(manifest=SimpleNamespace(name="digits", version="0.0.0-not-served"))
    with pytest.raises(DeliveryError, match=r"the new container failed .*wrong model version"):
        deploy(settings, record["image"], wrong)
    after = engine.container_state(settings.container)
    assert after["Id"] == before["Id"] and after["State"]["Running"]
    assert served_version(settings) == version_before
    for leftover in (f"{settings.container}-previous", f"{settings.container}-next"):
        assert engine.container_state(leftover) is None, f"{leftover} left behind"


def test_code_only_change_reuses_the_model_layer(deployment, tmp_path: Path) -> None:
    settings, store = deployment
    publish(store, tmp_path, "2.1.0")  # a good version on top of the corrupt one
    first = up(settings, echo=False, store=store)
    init = settings.context / "modelserver" / "__init__.py"
    init.write_text(init.read_text() + "\n# code-only change made by test_code_only_change\n")
    second = up(settings, echo=False, store=store)

    assert second["revision"] != first["revision"]
    assert second["digest"] != first["digest"]
    assert second["model_version"] == first["model_version"] == "2.1.0"
    assert second["model_bytes_transferred"] == 0, "an unchanged model must come from the cache"
    assert model_layer(settings, second) == model_layer(settings, first)
    assert served_version(settings) == "2.1.0"
