"""The main command end to end with real parts: Azurite, docker-registry, BuildKit and Docker.

The tests share one isolated deployment (module fixture) and run in order: deploy a first
model, deploy a newer one while a client polls the front door (no request may fail), refuse a
corrupt one while the old container keeps serving, roll back a failing release before the
switch, finish a release interrupted after the switch, and rebuild after a code-only change
reusing the model layer.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from azure.storage.blob import BlobServiceClient

from delivery import engine
from delivery.cli import status, up
from delivery.rollout import deploy, ensure_frontdoor, frontdoor, read_record, repair
from delivery.settings import DeliveryError, LocalSettings
from delivery.smoke import run_smoke
from tests.delivery.registry import registry_layers

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

    from modelship_contract.manifest import read_manifest

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


def ensure_deployed(settings: LocalSettings, store, tmp_path: Path, version: str) -> None:
    """A test run alone (-k) finds nothing deployed: publish and deploy a good model first."""
    if engine.container_state(settings.container) is None:
        publish(store, tmp_path, version)
        up(settings, echo=False, store=store)


def sized(settings: LocalSettings) -> LocalSettings:
    """The settings `up` deploys with: the memory limit sized for the fetched model."""
    from modelship_contract.manifest import read_manifest

    return settings.sized_for(read_manifest(settings.context / "model"))


def served_version(settings: LocalSettings) -> str:
    return run_smoke(f"http://127.0.0.1:{settings.port}", "digits", timeout=30, interval=0.5).version


class Poller(threading.Thread):
    """A client polling the front door during a release: one new connection per request."""

    def __init__(self, url: str, max_requests: int = 20000, interval: float = 0.01):
        super().__init__(daemon=True)
        self.url, self.max_requests, self.interval = url, max_requests, interval
        self.versions: list[str] = []
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        for _ in range(self.max_requests):  # bounded even if the test never sets done
            if self.done.is_set():
                return
            try:
                with urllib.request.urlopen(self.url, timeout=10) as resp:
                    self.versions.append(json.loads(resp.read())["versions"][-1])
            except Exception as exc:  # any failure counts
                self.failures.append(repr(exc))
            time.sleep(self.interval)

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=30)


class KeepAliveClients:
    """Clients that keep their connections to the front door open across a release.

    ``count`` threads, each with one HTTP/1.1 connection that it never closes on purpose, POST
    inference requests back to back (bounded). Any exception or non-2xx answer counts as a failure;
    a connection that the front door closed shows up as a new socket (``reconnects``).
    """

    def __init__(self, port: int, count: int = 4, max_requests: int = 20000):
        from delivery.smoke import infer_request

        self.port, self.max_requests = port, max_requests
        self.body = json.dumps(infer_request()).encode()
        self.versions: list[str] = []
        self.failures: list[str] = []
        self.reconnects = 0
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(count)]

    def run(self) -> None:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        sock = None
        for _ in range(self.max_requests):
            if self.done.is_set():
                break
            try:
                conn.request("POST", "/v2/models/digits/infer", body=self.body,
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                payload = resp.read()
                if sock is not None and conn.sock is not sock:
                    self.reconnects += 1
                sock = conn.sock
                if not 200 <= resp.status < 300:
                    self.failures.append(f"HTTP {resp.status}: {payload[:200]!r}")
                else:
                    self.versions.append(json.loads(payload)["model_version"])
            except Exception as exc:  # any failure counts
                self.failures.append(repr(exc))
                conn.close()
            time.sleep(0.005)
        conn.close()

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(timeout=30)


def model_layer(settings: LocalSettings, record: dict) -> str:
    """Blob digest of the image layer that holds the model, read from the registry."""
    layers = registry_layers(f"127.0.0.1:{settings.registry_port}", settings.repository,
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
    poller = Poller(f"http://127.0.0.1:{settings.port}/v2/models/digits")
    kept = KeepAliveClients(settings.port)
    poller.start()
    kept.start()
    try:
        started = time.monotonic()
        second = up(settings, echo=False, store=store)
        release_s = time.monotonic() - started
        # A few requests after the release as well: wait until each client saw the new version.
        deadline = time.monotonic() + 30
        while kept.versions.count("1.1.0") < 20 and time.monotonic() < deadline and not kept.failures:
            time.sleep(0.1)
    finally:
        poller.stop()
        kept.stop()
    print(f"release 1.0.0 -> 1.1.0: {release_s:.1f} s, {len(poller.versions)} requests answered, "
          f"{len(poller.failures)} failed; keep-alive: {len(kept.versions)} answered, "
          f"{len(kept.failures)} failed, {kept.reconnects} reconnects")
    assert poller.failures == [], f"requests failed during the release: {poller.failures[:5]}"
    assert kept.failures == [], f"keep-alive requests failed during the release: {kept.failures[:5]}"
    assert kept.reconnects == 0, "the front door closed a kept-alive client connection"
    assert kept.versions[0] == "1.0.0" and "1.1.0" in kept.versions
    assert poller.versions[0] == "1.0.0" and poller.versions[-1] == "1.1.0"
    switched = poller.versions.index("1.1.0")
    assert set(poller.versions[switched:]) == {"1.1.0"}, "the front door went back to the old container"
    assert second["model_version"] == "1.1.0"
    assert served_version(settings) == "1.1.0"
    assert second["endpoint"] == f"http://127.0.0.1:{settings.port}"
    # Runs by digest, from the local registry, with the Deployment's security settings.
    state = engine.container_state(settings.container)
    assert state["Config"]["Image"] == second["image"]
    assert re.fullmatch(rf"127\.0\.0\.1:{settings.registry_port}/.+@sha256:[0-9a-f]{{64}}", second["image"])
    host = state["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert state["Config"]["User"] == "10001:10001"
    assert host["CapDrop"] == ["ALL"]
    # The limit derived from the model's size (components.sizing), recorded with the deployment.
    assert second["memory"] == "576m" and host["Memory"] == 576 * 1024**2
    assert host["NanoCpus"] == int(float(settings.cpus) * 1e9)
    assert "/tmp" in host["Tmpfs"] and "no-new-privileges" in host["SecurityOpt"]

    # The container publishes only an ephemeral loopback port; the front door owns settings.port.
    bindings = state["NetworkSettings"]["Ports"]["8080/tcp"]
    assert [(b["HostIp"], int(b["HostPort"]) != settings.port) for b in bindings] == [("127.0.0.1", True)]
    assert frontdoor(settings).backend()["container_id"] == state["Id"]
    assert status(settings) == 0
    for leftover in (f"{settings.container}-previous", f"{settings.container}-next"):
        assert engine.container_state(leftover) is None, f"{leftover} left behind"

    # Unchanged model and code: nothing rebuilt, nothing redeployed, no model bytes moved; a front
    # door that died meanwhile is started again and pointed at the same container.
    frontdoor(settings).stop()
    again = up(settings, echo=False, store=store)
    assert again["image_id"] == second["image_id"]
    assert engine.container_state(settings.container)["Id"] == state["Id"]
    assert served_version(settings) == "1.1.0" and status(settings) == 0


def test_corrupt_model_fails_clearly_and_the_old_container_keeps_serving(
    deployment, azurite, tmp_path: Path
) -> None:
    settings, store = deployment
    ensure_deployed(settings, store, tmp_path, "1.9.0")
    before = engine.container_state(settings.container)
    assert before["State"]["Running"]
    version_before = served_version(settings)

    publish_unseen_bytes(store, tmp_path, "2.0.0")
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    blob = service.get_blob_client(store.container_name, "digits/2.0.0/model.onnx")
    size = blob.get_blob_properties().size
    blob.upload_blob(b"\0" * size, overwrite=True)  # same size, different bytes

    corrupt = r"cannot fetch the latest digits .*(sha256|integrity|corrupt)"
    with pytest.raises(DeliveryError, match=corrupt) as err:
        up(settings, echo=False, store=store)
    # The way back is named: the command that deploys a version that works.
    assert "make up MODEL=digits@<version>" in str(err.value)
    assert re.search(r"published: .*\b2\.0\.0\b", str(err.value))
    after = engine.container_state(settings.container)
    assert after["Id"] == before["Id"] and after["State"]["Running"]
    assert served_version(settings) == version_before


def test_a_release_that_fails_is_rolled_back_and_the_old_container_serves(deployment, tmp_path: Path) -> None:
    settings, store = deployment
    ensure_deployed(settings, store, tmp_path, "1.9.1")
    record = read_record(settings)
    before = engine.container_state(settings.container)
    version_before = served_version(settings)

    # An image reference that does not resolve: refused at create, the old container never stops.
    missing = record["image"].split("@")[0] + "@sha256:" + "0" * 64
    with pytest.raises(DeliveryError, match=r"cannot create a container from .* was not touched"):
        deploy(sized(settings), missing,
               SimpleNamespace(manifest=SimpleNamespace(name="digits", version="x")))
    untouched = engine.container_state(settings.container)
    assert untouched["Id"] == before["Id"] and untouched["State"]["StartedAt"] == before["State"]["StartedAt"]

    # A container that starts but fails its smoke test: removed before the switch, the old one
    # never stopped serving.
    wrong = SimpleNamespace(manifest=SimpleNamespace(name="digits", version="0.0.0-not-served"))
    with pytest.raises(DeliveryError, match=r"the new container failed .*wrong model version"):
        deploy(sized(settings), record["image"], wrong)
    after = engine.container_state(settings.container)
    assert after["Id"] == before["Id"] and after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert frontdoor(settings).backend()["container_id"] == before["Id"]
    assert served_version(settings) == version_before
    for leftover in (f"{settings.container}-previous", f"{settings.container}-next"):
        assert engine.container_state(leftover) is None, f"{leftover} left behind"


def test_a_release_interrupted_after_the_switch_is_finished_by_next_up(deployment, tmp_path: Path) -> None:
    settings, store = deployment
    ensure_deployed(settings, store, tmp_path, "1.9.2")
    record = read_record(settings)
    old = engine.container_state(settings.container)
    # The state a release leaves when interrupted right after the switch: the new container
    # serves behind the front door under its -next name, the old one still runs.
    nxt = f"{settings.container}-next"
    engine.create_container(record["image"], nxt, 0, sized(settings).run_options,
                            {"modelship.instance": settings.instance, "modelship.role": "live"})
    engine.docker("start", nxt)
    new_id = engine.container_state(nxt)["Id"]
    frontdoor(settings).switch(engine.published_port(nxt, settings.run_options.container_port), new_id)
    served_version(settings)

    # What `up` does first, before the model store or the build (whose outcome does not matter here).
    repair(settings, ensure_frontdoor(settings))
    live = engine.container_state(settings.container)
    assert live["Id"] == new_id != old["Id"] and live["State"]["Running"]
    assert frontdoor(settings).backend()["container_id"] == new_id
    for leftover in (f"{settings.container}-previous", nxt):
        assert engine.container_state(leftover) is None, f"{leftover} left behind"
    assert served_version(settings) == record["model_version"] and status(settings) == 0


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


def test_make_up_model_pins_a_published_version(deployment, tmp_path: Path) -> None:
    """`make up MODEL=digits@3.0.0` deploys that version even when a newer one is the latest."""
    import dataclasses

    settings, store = deployment
    publish(store, tmp_path, "3.0.0")
    publish(store, tmp_path, "3.1.0")
    latest = up(settings, echo=False, store=store)
    assert latest["model_version"] == "3.1.0"
    pinned = dataclasses.replace(settings, model_version="3.0.0")
    record = up(pinned, echo=False, store=store)
    assert record["model_version"] == "3.0.0" and served_version(settings) == "3.0.0"
    with pytest.raises(DeliveryError, match=r"cannot fetch digits@9\.9\.9 .*make up MODEL=digits@<version> "
                                            r"\(published: .*3\.0\.0, 3\.1\.0\)"):
        up(dataclasses.replace(settings, model_version="9.9.9"), echo=False, store=store)
    assert served_version(settings) == "3.0.0"
