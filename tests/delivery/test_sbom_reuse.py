"""An image built from the same environment inputs reuses its SBOM; any input of the venv renews it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from delivery import build, engine, sbom
from delivery.settings import LocalSettings


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "app"
    (ctx / "wheels").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM base\n")
    (ctx / "requirements.txt").write_text("numpy==2.4.6\n")
    (ctx / "wheels" / "numpy-2.4.6-cp311-linux_x86_64.whl").write_bytes(b"x" * 10)
    return ctx


def test_the_key_follows_every_input_of_the_environment(context: Path) -> None:
    key = sbom.environment_key(context, "sha256:base1")
    assert sbom.environment_key(context, "sha256:base1") == key
    (context / "modelserver").mkdir()
    (context / "modelserver" / "http.py").write_text("# code only\n")  # code and model are not inputs
    assert sbom.environment_key(context, "sha256:base1") == key
    assert sbom.environment_key(context, "sha256:base2") != key
    for change in (lambda: (context / "requirements.txt").write_text("numpy==2.4.7\n"),
                   lambda: (context / "Dockerfile").write_text("FROM base\nRUN true\n"),
                   lambda: (context / "wheels" / "orjson-3.13.0.whl").write_bytes(b"y")):
        change()
        assert sbom.environment_key(context, "sha256:base1") != key
        key = sbom.environment_key(context, "sha256:base1")


def test_push_generates_once_then_reuses(context: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    generated: list[str] = []

    def generate(image: str, out: Path) -> dict:
        generated.append(image)
        bom = {"components": [{"name": "numpy"}], "metadata": {"properties": [
            {"name": "modelship:image", "value": image}]}}
        out.write_text(json.dumps(bom))
        return bom

    pushed: list[dict] = []

    def push(host: str, repository: str, digest: str, path: Path) -> str:
        pushed.append(json.loads(path.read_text()))
        return "sha256:" + "5" * 64

    monkeypatch.setattr(sbom, "generate", generate)
    monkeypatch.setattr(sbom, "push", push)
    monkeypatch.setattr(engine, "image_id", lambda ref: "sha256:base1")

    class Registry:
        host = "127.0.0.1:5999"

    settings = LocalSettings(state_dir=tmp_path / "state", context=context, instance="t")
    build.push_sbom(settings, Registry(), "r/m@sha256:" + "1" * 64, "sha256:" + "1" * 64, "base")
    build.push_sbom(settings, Registry(), "r/m@sha256:" + "2" * 64, "sha256:" + "2" * 64, "base")
    assert generated == ["r/m@sha256:" + "1" * 64]  # the second image's environment is the same
    assert "same environment as before: reused" in capsys.readouterr().out
    # The reused SBOM names the image it is pushed for, and only that one.
    second = {"name": "modelship:image", "value": "r/m@sha256:" + "2" * 64}
    assert pushed[1]["metadata"]["properties"] == [second]
    assert pushed[1]["components"] == pushed[0]["components"]
    (context / "requirements.txt").write_text("numpy==2.4.7\n")
    build.push_sbom(settings, Registry(), "r/m@sha256:" + "3" * 64, "sha256:" + "3" * 64, "base")
    assert len(generated) == 2
