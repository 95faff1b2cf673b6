"""The model directory contract: what a valid manifest is, and what each violation says."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from modelship_contract.manifest import (
    FIELDS,
    MANIFEST_FILE,
    Datatype,
    ManifestError,
    ModelManifest,
    TensorSpec,
    git_revision,
    load_model_dir,
    read_manifest,
)


def _write_model_dir(path: Path, payload: bytes = b"onnx-bytes", **overrides) -> dict:
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.onnx").write_bytes(payload)
    data = {
        "schema": 1,
        "name": "digits",
        "version": "1.0.0",
        "model_file": "model.onnx",
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
        "framework": "onnx",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}],
        "created_at": "2026-11-23T00:00:00Z",
        "source_revision": "abc123",
        "metrics": {"accuracy": 0.97},
    }
    data.update(overrides)
    (path / MANIFEST_FILE).write_text(json.dumps(data))
    return data


def test_valid_directory_round_trips(tmp_path: Path) -> None:
    data = _write_model_dir(tmp_path)
    manifest = load_model_dir(tmp_path)
    assert manifest.ref == "digits@1.0.0"
    assert manifest.inputs == (TensorSpec("input", Datatype.FP32, (-1, 64)),)
    assert ModelManifest.from_dict(json.loads(manifest.to_json())) == manifest
    assert manifest.to_dict()["sha256"] == data["sha256"]


def test_sha256_mismatch_names_both_digests(tmp_path: Path) -> None:
    _write_model_dir(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"onnx-bytez")  # same size, other content
    with pytest.raises(ManifestError, match=r"sha256 mismatch .* file has [0-9a-f]{64}, manifest.json says"):
        load_model_dir(tmp_path)


def test_size_mismatch_is_reported(tmp_path: Path) -> None:
    _write_model_dir(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"short")
    with pytest.raises(ManifestError, match=r"is 5 bytes but manifest.json says 10"):
        load_model_dir(tmp_path)


def test_missing_manifest_and_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"no manifest.json in"):
        read_manifest(tmp_path)
    _write_model_dir(tmp_path)
    (tmp_path / "model.onnx").unlink()
    with pytest.raises(ManifestError, match=r"does not exist"):
        load_model_dir(tmp_path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"name": "Digits_V1"}, "name 'Digits_V1' is not allowed: use 1-63 lowercase"),
        ({"version": "latest"}, "'latest' is reserved"),
        ({"version": "1.0/2"}, "version '1.0/2' is not allowed"),
        ({"sha256": "abc"}, "sha256 must be 64 lowercase hex digits"),
        ({"model_file": "../x.onnx"}, "model_file must be a plain file name"),
        ({"schema": 2}, "schema must be 1, got 2"),
        (
            {"inputs": [{"name": "x", "datatype": "FLOAT", "shape": [1]}]},
            r"inputs\[0\].datatype 'FLOAT' is not one of: BOOL",
        ),
        ({"outputs": [{"name": "y", "datatype": "FP32", "shape": [0]}]}, r"outputs\[0\].shape must be"),
        ({"metrics": {"accuracy": "high"}}, "metrics must map names to numbers"),
        ({"evaluation": {"task": "regression", "metric": "accuracy", "tolerance": 0.1}},
         "evaluation.task 'regression' is not one of: classification"),
        ({"evaluation": {"task": "classification", "metric": "auc", "tolerance": 0.1}},
         "evaluation.metric 'auc' is not one of: accuracy, macro_f1"),
        ({"evaluation": {"task": "classification", "metric": "accuracy", "tolerance": 5}},
         "evaluation.tolerance must be a number from 0 to 1"),
        ({"evaluation": {"task": "classification", "metric": "accuracy", "tolerance": 0, "min": 1}},
         r"evaluation has unknown keys \['min'\]"),
        ({"evaluation": "strict"}, "evaluation must be an object"),
    ],
)
def test_invalid_fields_name_the_field_and_the_rule(tmp_path: Path, override: dict, message: str) -> None:
    _write_model_dir(tmp_path, **override)
    with pytest.raises(ManifestError, match=message):
        read_manifest(tmp_path)


def test_missing_keys_are_listed(tmp_path: Path) -> None:
    tmp_path.joinpath(MANIFEST_FILE).write_text(json.dumps({"schema": 1, "name": "digits"}))
    with pytest.raises(ManifestError, match=r"missing: version, model_file, sha256"):
        read_manifest(tmp_path)


def test_invalid_json_is_reported(tmp_path: Path) -> None:
    tmp_path.joinpath(MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ManifestError, match=r"is not valid JSON"):
        read_manifest(tmp_path)


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def test_git_revision_is_the_short_sha_of_the_checkout(tmp_path: Path) -> None:
    assert git_revision(tmp_path) is None, "not a repository"
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "a.py").write_text("a = 1\n")
    _git(tmp_path, "init", "-q")
    assert git_revision(tmp_path) is None, "no commit yet"
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "one")
    sha = _git(tmp_path, "rev-parse", "HEAD")[:12]
    assert git_revision(tmp_path / "code") == sha
    assert git_revision(tmp_path / "code", clean=True) == sha


def test_git_revision_with_clean_refuses_a_modified_path(tmp_path: Path) -> None:
    for sub in ("code", "other"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "a.py").write_text("a = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "one")
    sha = _git(tmp_path, "rev-parse", "HEAD")[:12]
    (tmp_path / "other" / "a.py").write_text("a = 2\n")
    assert git_revision(tmp_path / "code", clean=True) == sha, "a change elsewhere does not count"
    (tmp_path / "code" / "b.py").write_text("b = 1\n")
    assert git_revision(tmp_path / "code", clean=True) is None, "an untracked file counts"
    assert git_revision(tmp_path / "code") == sha


def test_the_evaluation_bar_round_trips_and_is_optional(tmp_path: Path) -> None:
    bar = {"task": "classification", "metric": "macro_f1", "tolerance": 0.01, "dataset": "digits-golden"}
    _write_model_dir(tmp_path / "with", evaluation=bar)
    manifest = load_model_dir(tmp_path / "with")
    assert manifest.evaluation is not None and manifest.evaluation.metric.value == "macro_f1"
    assert ModelManifest.from_dict(manifest.to_dict()) == manifest
    assert manifest.to_dict()["evaluation"] == bar
    _write_model_dir(tmp_path / "without")
    old = load_model_dir(tmp_path / "without")
    assert old.evaluation is None and "evaluation" not in old.to_dict()


def test_unknown_fields_are_refused_and_every_known_one_is_written(tmp_path: Path) -> None:
    bar = {"task": "classification", "metric": "macro_f1", "tolerance": 0.01, "dataset": "digits-golden"}
    _write_model_dir(tmp_path / "full", evaluation=bar, trained_with="scikit-learn 1.5")
    assert tuple(load_model_dir(tmp_path / "full").to_dict()) == FIELDS, "FIELDS and to_dict disagree"
    _write_model_dir(tmp_path / "typo", metrcis={"accuracy": 0.9})
    with pytest.raises(ManifestError, match=r"unknown field\(s\) 'metrcis'; schema 1 allows: schema, name"):
        read_manifest(tmp_path / "typo")


@pytest.mark.parametrize(("make", "message"), [
    (lambda m: m.write_bytes(b'{"name": "d\xe9j\xe0"}'), "is not UTF-8 text"),
    (lambda m: (m.unlink(), m.mkdir()), "is a directory; it must be a JSON file"),
    (lambda m: (m.unlink(), m.symlink_to(m)), "cannot be read: Too many levels of symbolic links"),
])
def test_an_unreadable_manifest_is_a_manifest_error(tmp_path: Path, make, message: str) -> None:
    _write_model_dir(tmp_path)
    make(tmp_path / MANIFEST_FILE)
    with pytest.raises(ManifestError, match=message):
        read_manifest(tmp_path)
