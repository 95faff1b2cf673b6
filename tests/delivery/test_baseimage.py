"""The local base image is built by one code path (delivery.baseimage), never pulled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from delivery import baseimage, build, engine
from delivery.baseimage import LOCAL_BASE, BaseImageError, ensure_base_image
from delivery.settings import LocalSettings


def fake_script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "build-base-image.sh"
    script.write_text("#!/usr/bin/env bash\n" + body + "\n")
    return script


def test_a_present_image_is_reused_without_running_the_script(tmp_path, monkeypatch) -> None:
    calls = tmp_path / "calls"
    monkeypatch.setattr(baseimage, "BUILD_SCRIPT", fake_script(tmp_path, f"echo ran >> {calls}"))
    monkeypatch.setattr(engine, "image_exists", lambda ref: True)
    assert ensure_base_image() == LOCAL_BASE
    assert not calls.exists()


def test_a_missing_image_is_built_by_the_script_with_its_tag(tmp_path, monkeypatch) -> None:
    args = tmp_path / "args"
    monkeypatch.setattr(baseimage, "BUILD_SCRIPT", fake_script(tmp_path, f'echo "$@" > {args}'))
    monkeypatch.setattr(engine, "image_exists", lambda ref: args.exists())  # there once the script ran
    lines: list[str] = []
    ref = ensure_base_image("example/base:1", log_file=tmp_path / "b.log", log=lines.append)
    assert ref == "example/base:1"
    assert args.read_text().strip() == "example/base:1"
    assert "building the base image example/base:1" in lines[0] and "built the base image" in lines[-1]


def test_a_failed_build_names_the_script_and_its_log(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(baseimage, "BUILD_SCRIPT", fake_script(tmp_path, "echo no mirror; exit 3"))
    monkeypatch.setattr(engine, "image_exists", lambda ref: False)
    log_file = tmp_path / "base.log"
    with pytest.raises(BaseImageError, match=r"build-base-image.sh could not build .* \(exit 3\) \(log: "):
        ensure_base_image(log_file=log_file, log=lambda _: None)
    assert "no mirror" in log_file.read_text()


def test_make_up_never_pulls_a_base_from_docker_hub(tmp_path, monkeypatch) -> None:
    """Without MODELSHIP_BASE_IMAGE the local flow builds on the debootstrap base, never a pull."""
    monkeypatch.setattr(engine, "image_exists", lambda ref: ref == LOCAL_BASE)
    monkeypatch.setattr(engine, "pull", lambda *a, **k: pytest.fail("the local flow tried to pull"))
    settings = LocalSettings.from_env({"MODELSHIP_STATE_DIR": str(tmp_path)})
    assert build.choose_base_image(settings) == LOCAL_BASE
    pinned = LocalSettings.from_env({"MODELSHIP_STATE_DIR": str(tmp_path),
                                           "MODELSHIP_BASE_IMAGE": "example/base:2"})
    assert build.choose_base_image(pinned) == "example/base:2"


def test_the_image_tests_build_on_the_session_base_fixture() -> None:
    """tests/app/test_image.py builds FROM the fixture's image: no test builds FROM a pulled base."""
    source = (Path(__file__).parents[1] / "app" / "test_image.py").read_text()
    assert "BASE_IMAGE={base_image}" in source and "python:3.11-slim" not in source
    assert os.environ.get("MODELSHIP_BASE_IMAGE", LOCAL_BASE) != "python:3.11-slim"
