"""The image build description shared by ModelImage and local delivery."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import modelship_contract
from components.build_spec import CONTRACT_SUBDIR, BuildSpecError, make_build_spec, stage_contract
from components.stack import choose_model
from tests.components.conftest import make_settings


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "app"
    (ctx / "model").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    payload = b"model"
    (ctx / "model" / "model.onnx").write_bytes(payload)
    (ctx / "model" / "manifest.json").write_text(json.dumps({
        "schema": 1, "name": "digits", "version": "2.1.0", "model_file": "model.onnx",
        "sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload), "framework": "onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}],
        "created_at": "2026-11-23T00:00:00Z", "source_revision": "r1",
    }))
    return ctx


def test_tag_and_build_args_carry_revision_and_model(context: Path) -> None:
    spec = make_build_spec(context, revision="0123abcd", base_image="base:1")
    assert spec.tag == "0123abcd-digits-2.1.0"
    assert spec.tags_for("acr.example.io/digits") == ["acr.example.io/digits:0123abcd-digits-2.1.0"]
    assert spec.build_args == {
        "BASE_IMAGE": "base:1",
        "REVISION": "0123abcd",
        "MODEL_NAME": "digits",
        "MODEL_VERSION": "2.1.0",
        "MODEL_SHA256": spec.manifest.sha256,
    }
    assert spec.dockerfile == context.resolve() / "Dockerfile"


def test_model_outside_the_context_is_refused(context: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildSpecError, match=r"must be .*app/model: the Dockerfile copies"):
        make_build_spec(context, revision="r1", model_dir=tmp_path / "elsewhere")


def test_bad_revision_and_missing_dockerfile(context: Path) -> None:
    with pytest.raises(BuildSpecError, match=r"revision 'a b' is not allowed"):
        make_build_spec(context, revision="a b")
    (context / "Dockerfile").unlink()
    with pytest.raises(BuildSpecError, match=r"has no Dockerfile"):
        make_build_spec(context, revision="r1")


def _package_files() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in Path(modelship_contract.__file__).parent.glob("*.py")}


def test_the_contract_is_staged_into_the_context(context: Path) -> None:
    """By the Pulumi program, before the image build reads the context (the local build stages it
    itself, delivery/build.py); make_build_spec only describes the build."""
    choose_model(make_settings(), context.parent, revision="abc")
    staged = context / CONTRACT_SUBDIR
    assert {p.name: p.read_bytes() for p in staged.glob("*.py")} == _package_files()
    assert sorted(p.name for p in context.iterdir()) == ["Dockerfile", "model", CONTRACT_SUBDIR]


def test_an_up_to_date_copy_is_left_alone(context: Path) -> None:
    first = stage_contract(context)
    inode = first.stat().st_ino
    assert stage_contract(context).stat().st_ino == inode


@pytest.mark.parametrize("stale", ["edited", "extra file", "missing file"])
def test_a_stale_copy_is_replaced(context: Path, stale: str) -> None:
    staged = stage_contract(context)
    if stale == "edited":
        (staged / "image.py").write_text("PORT = 1\n")
    elif stale == "extra file":
        (staged / "old_module.py").write_text("")
    else:
        (staged / "canary.py").unlink()
    stage_contract(context)
    assert {p.name: p.read_bytes() for p in staged.glob("*.py")} == _package_files()
    assert [p.name for p in context.iterdir() if p.name.startswith(".contract-")] == []
