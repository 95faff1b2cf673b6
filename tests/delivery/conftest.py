"""Fixtures for the local-delivery tests: a Docker Engine (mandatory in CI) and an isolated deployment.

Every test deployment has its own state directory, registry port, service port, container-name
prefix, build-context copy and model-store container, so the tests never disturb a `make up`
deployment on the same machine (which uses .local/, ports 8080/5000/10000 and `modelship-*`).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from delivery import engine
from delivery.cli import down
from delivery.services import free_port
from delivery.settings import ROOT, LocalSettings
from tests.needs import unavailable


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """Skip without a Docker Engine, except where CI or MODELSHIP_REQUIRE_DOCKER make it mandatory."""
    if engine.engine_available():
        return
    unavailable(f"no Docker Engine answers ({engine.DOCKER} info failed); run scripts/bootstrap.sh")


def copy_context(dest: Path) -> Path:
    """A copy of app/ without the model: the same Dockerfile and code as the real build."""
    shutil.copytree(
        ROOT / "app", dest,
        ignore=shutil.ignore_patterns("model", "__pycache__", "*.pyc", ".model.*"),
    )
    return dest


@pytest.fixture(scope="module")
def deployment(
    docker_engine, base_image, azurite, tmp_path_factory
) -> Iterator[tuple[LocalSettings, object]]:
    """Settings for an isolated local deployment and a model store of its own on the test Azurite."""
    from modelstore.store import ModelStore

    base = tmp_path_factory.mktemp("local")
    instance = f"mst-{uuid.uuid4().hex[:8]}"
    ports = set()
    while len(ports) < 2:
        ports.add(free_port())
    port, registry_port = sorted(ports)
    settings = LocalSettings.from_env({
        "MODELSHIP_STATE_DIR": str(base / "state"),
        "MODELSHIP_CONTEXT": str(copy_context(base / "app")),
        "MODELSHIP_INSTANCE": instance,
        "MODELSHIP_PORT": str(port),
        "MODELSHIP_REGISTRY_PORT": str(registry_port),
        "MODELSHIP_AZURITE_PORT": str(azurite.port),
        "MODELSHIP_REPOSITORY": f"modelship-test/{instance}",
        "MODELSHIP_BASE_IMAGE": base_image,
    })
    store = ModelStore.from_connection_string(azurite.connection_string, f"t-{instance}", progress=False)
    # Releases here go all at once after the smoke test; tests/delivery/test_release_e2e.py turns the
    # canary on (with its own short steps) where it is the subject.
    saved = {k: os.environ.get(k) for k in ("MODELSHIP_CANARY", "MODELSHIP_PROMETHEUS_PORT")}
    os.environ["MODELSHIP_CANARY"] = "off"
    os.environ["MODELSHIP_PROMETHEUS_PORT"] = str(free_port())
    try:
        yield settings, store
    finally:
        down(settings)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        refs = engine.docker("images", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split()
        for ref in refs:
            if f"/modelship-test/{instance}:" in ref:
                engine.docker("rmi", ref, check=False)
