"""A code-only release (the live model's version and sha256) skips the canary unless told otherwise."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from delivery import canary, engine, prometheus
from delivery.canary import CanarySettings, same_model

SHA = "ab" * 32
LABELS = {"io.modelship.model.name": "digits", "io.modelship.model.version": "2.0.0",
          "io.modelship.model.sha256": SHA}


def test_the_canary_mode_comes_from_the_environment() -> None:
    assert dataclasses.astuple(CanarySettings.from_env({}))[:2] == (True, False)
    assert dataclasses.astuple(CanarySettings.from_env({"MODELSHIP_CANARY": "off"}))[:2] == (False, False)
    assert dataclasses.astuple(CanarySettings.from_env({"MODELSHIP_CANARY": "always"}))[:2] == (True, True)
    with pytest.raises(ValueError, match="MODELSHIP_CANARY must be on, off or always, got 'sometimes'"):
        CanarySettings.from_env({"MODELSHIP_CANARY": "sometimes"})


def test_same_model_means_same_name_version_and_bytes() -> None:
    assert same_model(LABELS, dict(LABELS)) == SHA
    assert same_model(LABELS, {**LABELS, "io.modelship.model.version": "2.0.1"}) is None  # a new version
    assert same_model(LABELS, {**LABELS, "io.modelship.model.sha256": "cd" * 32}) is None
    unknown = {**LABELS, "io.modelship.model.sha256": "unknown"}
    assert same_model(unknown, dict(unknown)) is None  # an image built without its labels proves nothing
    assert same_model({}, {}) is None


class _Settings:
    state_dir = Path("/nonexistent")
    instance = "t"

    class run_options:
        container_port = 8080


def _containers(monkeypatch: pytest.MonkeyPatch, live: dict, new: dict) -> list[str]:
    states = {"live": {"Id": "1" * 64, "State": {"Running": True}, "Config": {"Labels": live}},
              "next": {"Id": "2" * 64, "State": {"Running": True}, "Config": {"Labels": new}}}
    started: list[str] = []

    def inspect(name: str) -> dict | None:
        started.append(f"inspect {name}")
        return states.get(name)

    def port(container: str | dict, container_port: int) -> int:
        assert container == states["live"], "the live state in hand is reused, not inspected again"
        return 40000

    monkeypatch.setattr(engine, "container_state", inspect)
    monkeypatch.setattr(engine, "published_port", port)

    class Refused:
        def __init__(self, *args, **kwargs) -> None:
            started.append("prometheus")
            raise RuntimeError("the canary started")

    monkeypatch.setattr(prometheus, "LocalPrometheus", Refused)
    return started


def test_a_code_only_release_goes_at_once(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("MODELSHIP_CANARY", "on")
    started = _containers(monkeypatch, LABELS, dict(LABELS))
    assert canary.release(_Settings(), None, "live", "next", 40001, "digits", "2.0.0") is None
    assert started == ["inspect live", "inspect next"]
    assert "canary skipped: digits@2.0.0 (sha256 abababababab) is the model already serving" \
        in capsys.readouterr().out


@pytest.mark.parametrize(("mode", "new"), [("always", LABELS),
                                           ("on", {**LABELS, "io.modelship.model.version": "2.1.0"})])
def test_a_model_change_or_always_canaries(monkeypatch: pytest.MonkeyPatch, mode: str, new: dict) -> None:
    monkeypatch.setenv("MODELSHIP_CANARY", mode)
    started = _containers(monkeypatch, LABELS, dict(new))
    with pytest.raises(RuntimeError, match="the canary started"):
        canary.release(_Settings(), None, "live", "next", 40001, "digits", new["io.modelship.model.version"])
    assert started == ["inspect live", "inspect next", "prometheus"]  # each container inspected once
