"""The build's inputs (delivery/build.py): the source revision in the image tag, the wheelhouse.
No Docker."""

from __future__ import annotations

import subprocess
from pathlib import Path

from delivery.build import context_digest, missing_wheels, source_revision


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "app"
    (ctx / "model").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (ctx / "server.py").write_text("print(1)\n")
    (ctx / "model" / "model.onnx").write_bytes(b"weights")
    return ctx


def test_revision_follows_code_not_model(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    before = context_digest(ctx)
    (ctx / "model" / "model.onnx").write_bytes(b"other weights")
    assert context_digest(ctx) == before, "a model change must not change the code revision"
    (ctx / "server.py").write_text("print(2)\n")
    assert context_digest(ctx) != before
    rev = source_revision(ctx)
    assert rev.startswith("dev-") and len(rev) == 16


def _committed(tmp_path: Path) -> tuple[Path, Path, str]:
    ctx = _context(tmp_path)
    contract = tmp_path / "modelship_contract"
    contract.mkdir()
    (contract / "image.py").write_text("PORT = 8080\n")
    git = ["git", "-C", str(tmp_path), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    sha = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], check=True, capture_output=True,
                         text=True).stdout.strip()
    return ctx, contract, sha


def test_revision_is_the_git_sha_when_committed(tmp_path: Path) -> None:
    ctx, contract, sha = _committed(tmp_path)
    assert source_revision(ctx, contract) == sha
    (ctx / "server.py").write_text("print(3)\n")
    assert source_revision(ctx, contract).startswith("dev-")


def test_an_uncommitted_contract_change_is_a_dev_revision(tmp_path: Path) -> None:
    ctx, contract, sha = _committed(tmp_path)
    assert source_revision(ctx, contract) == sha
    (contract / "image.py").write_text("PORT = 8081\n")
    assert source_revision(ctx, contract).startswith("dev-")


def test_missing_wheels_lists_pins_without_a_wheel(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    (tmp_path / "requirements.txt").write_text(
        "# pinned\nprometheus-client==0.26.0\nnumpy==2.4.6  # direct\ntyping-extensions==4.16.0\n"
    )
    (tmp_path / "wheels" / "prometheus_client-0.26.0-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "wheels" / "numpy-2.4.5-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    assert missing_wheels(tmp_path) == ["numpy==2.4.6", "typing-extensions==4.16.0"]
