"""Fixtures for the inference service tests: one tiny real model and one real server process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.app.modelserver_process import RunningServer, start_server, stop_server
from training.train_digits import train


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real demo model, trained once per session (about a second)."""
    out = tmp_path_factory.mktemp("model")
    train(out, name="digits", version="1.0.0", source_revision="test")
    return out


@pytest.fixture(scope="session")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The real server process (one worker) for the whole session."""
    running = start_server(model_dir, tmp_path_factory.mktemp("server") / "server.log")
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture()
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield http
