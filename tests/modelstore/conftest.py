"""Helpers for the model-store tests: fake model directories and a store per test on Azurite."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from modelship_contract.manifest import Datatype, ModelManifest, TensorSpec
from modelstore.store import ModelStore


def write_model_dir(
    path: Path, name: str, version: str, data: bytes | None = None, size: int = 0
) -> ModelManifest:
    """A model directory with a valid manifest and a fake model file (the store only moves bytes).

    ``size`` without ``data`` writes ``size`` bytes quickly: random 1 MiB blocks, each distinct,
    so a misplaced range changes the sha256.
    """
    path.mkdir(parents=True, exist_ok=True)
    model = path / "model.onnx"
    digest = hashlib.sha256()
    if data is not None:
        model.write_bytes(data)
        digest.update(data)
        size = len(data)
    else:
        block = os.urandom(1024 * 1024)
        with open(model, "wb") as fh:
            written = 0
            i = 0
            while written < size:
                piece = (i.to_bytes(8, "big") + block[8:])[: size - written]
                fh.write(piece)
                digest.update(piece)
                written += len(piece)
                i += 1
    manifest = ModelManifest(
        name=name, version=version, model_file="model.onnx", sha256=digest.hexdigest(), size=size,
        framework="onnx", inputs=(TensorSpec("input", Datatype.FP32, (-1, 64)),),
        outputs=(TensorSpec("label", Datatype.INT64, (-1,)),), created_at="2025-01-01T00:00:00Z",
        source_revision="test", metrics={"accuracy": 0.97},
    )
    (path / "manifest.json").write_text(manifest.to_json())
    return manifest


@pytest.fixture(name="write_model_dir")
def write_model_dir_fixture() -> Callable[..., ModelManifest]:
    return write_model_dir


@pytest.fixture
def make_model(tmp_path: Path) -> Callable[..., tuple[Path, ModelManifest]]:
    def make(name: str = "digits", version: str = "1", data: bytes | None = None, size: int = 0):
        if data is None and not size:
            data = os.urandom(4096) + f"{name}@{version}".encode()
        d = tmp_path / "src" / f"{name}-{version}-{uuid.uuid4().hex[:6]}"
        return d, write_model_dir(d, name, version, data, size)

    return make


@pytest.fixture
def container() -> str:
    """A fresh container name per test, so tests share one Azurite but never each other's models."""
    return f"t-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def store(azurite, container: str) -> ModelStore:
    return ModelStore.from_connection_string(azurite.connection_string, container, progress=False)


@pytest.fixture
def store_env(azurite, container: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for the CLI pointing at the test's container."""
    monkeypatch.delenv("MODELSHIP_STORE_URL", raising=False)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("MODELSHIP_STORE_CONTAINER", container)
    return {**os.environ}


def move_right_after_first_read(aliases, version: str, why: str) -> dict[str, int]:
    """Make ``aliases`` race another writer deterministically: right after its first read of an alias,
    a second client force-moves that alias to ``version``. Returns the read counter ({"n": reads})."""
    from modelstore.aliases import Aliases

    store, original, calls = aliases.store, aliases.read, {"n": 0}

    def racing_read(name, alias):
        doc = original(name, alias)
        calls["n"] += 1
        if calls["n"] == 1:
            Aliases(ModelStore(store._container, account_url=store.account_url)).move(
                name, alias, version, why, forced=True)
        return doc

    aliases.read = racing_read
    return calls
