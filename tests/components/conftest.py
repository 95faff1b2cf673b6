"""Fixtures for the stack tests: recording mocks for every test, a throwaway project, settings."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.testing import RecordingMocks, install_mocks
from settings import Settings

BASE = {"storageAccountName": "modelshipdev01", "registryName": "modelshipacr01", "dnsLabel": "modelship-dev",
        "deployerPrincipalType": "ServicePrincipal"}
"""Settings of a pipeline run: the mocks' deployer is a service principal too."""


def write_model(model_dir: Path, name: str = "digits", version: str = "2.1.0",
                payload: bytes = b"onnx") -> Path:
    """A minimal model directory that satisfies the manifest contract."""
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "model.onnx").write_bytes(payload)
    (model_dir / "manifest.json").write_text(json.dumps({
        "schema": 1, "name": name, "version": version, "model_file": "model.onnx",
        "sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload), "framework": "onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}],
        "created_at": "2026-11-23T00:00:00Z", "source_revision": "r1",
    }))
    return model_dir


@pytest.fixture(autouse=True)
def mocks() -> Iterator[RecordingMocks]:
    """Fresh recording mocks for every test; a registration they rejected fails the test."""
    installed = install_mocks()
    yield installed
    assert not installed.rejections, f"the mocks rejected: {installed.rejections}"


def make_project(root: Path, *, model: bool = True, dockerignore: bool = False, **model_args: Any) -> Path:
    """A project at ``root`` with ``app/Dockerfile`` and, unless ``model=False``, a model fetched into
    ``app/model`` (``model_args`` go to :func:`write_model`)."""
    (root / "app").mkdir(parents=True)
    (root / "app" / "Dockerfile").write_text("FROM scratch\n")
    if dockerignore:
        (root / "app" / ".dockerignore").write_text("**/__pycache__\n")
    if model:
        write_model(root / "app" / "model", **model_args)
    return root


@pytest.fixture
def empty_project(tmp_path: Path) -> Path:
    """A project with ``app/Dockerfile`` but no model fetched yet."""
    return make_project(tmp_path / "project", model=False, dockerignore=True)


@pytest.fixture
def project(empty_project: Path) -> Path:
    """A project with model digits@2.1.0 fetched into ``app/model``."""
    write_model(empty_project / "app" / "model")
    return empty_project


def make_settings(**overrides: object) -> Settings:
    return Settings.from_mapping({**BASE, **overrides})


@pytest.fixture
def settings() -> Settings:
    return make_settings()
