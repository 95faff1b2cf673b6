"""Disk hygiene: down empties app/model, up keeps the newest N, --purge removes the stored data."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from delivery import engine, hygiene
from tests.needs import unavailable


def test_down_empties_the_fetched_model_but_nothing_else(tmp_path: Path) -> None:
    context = tmp_path / "app"
    (context / "model").mkdir(parents=True)
    (context / "model" / "manifest.json").write_text("{}")
    (context / "model" / "model.onnx").write_bytes(b"x" * 100)
    (context / "Dockerfile").write_text("FROM scratch\n")
    lines: list[str] = []
    hygiene.clear_model_dir(context, lines.append)
    assert not (context / "model").exists() and (context / "Dockerfile").exists()
    assert "102 bytes" in lines[0]
    # A directory that is not a fetched model (no manifest) is never removed.
    (context / "model").mkdir()
    (context / "model" / "notes.txt").write_text("mine")
    hygiene.clear_model_dir(context, lines.append)
    assert (context / "model" / "notes.txt").exists()


def test_the_model_cache_keeps_the_most_recently_used(tmp_path: Path) -> None:
    sha = tmp_path / "cache" / "sha256"
    sha.mkdir(parents=True)
    for i in range(5):
        (sha / f"{i:064x}").write_bytes(b"m" * 10)
        (sha / f"{i:064x}.verified").write_text("{}")
        os.link(sha / f"{i:064x}", tmp_path / f"use{i}")  # a cache hit links: ctime moves forward
    os.link(sha / f"{0:064x}", tmp_path / "use0-again")  # entry 0 used last
    assert hygiene.prune_cache(tmp_path / "cache", 2, lambda _: None) == 3
    assert sorted(p.name[:4] + p.name[-9:] for p in sha.iterdir()) == sorted(
        f"{i:064x}"[:4] + f"{i:064x}{s}"[-9:] for i in (0, 4) for s in ("", ".verified"))


def test_keep_from_the_environment() -> None:
    assert hygiene.keep_from_env({}) == hygiene.DEFAULT_KEEP == 3
    assert hygiene.keep_from_env({"MODELSHIP_KEEP": "5"}) == 5
    for bad in ("0", "x", "101"):
        with pytest.raises(ValueError, match="MODELSHIP_KEEP must be a whole number in 1-100"):
            hygiene.keep_from_env({"MODELSHIP_KEEP": bad})


@pytest.fixture()
def images():
    if not engine.engine_available():
        unavailable(f"no Docker Engine answers ({engine.DOCKER} info failed)")
    repo = f"mst-{uuid.uuid4().hex[:8]}/hygiene"
    ids = []
    for i in range(4):  # four distinct tiny images, oldest first (import stamps them "now", to the ns)
        tar = io.BytesIO()
        with tarfile.open(fileobj=tar, mode="w") as archive:
            info = tarfile.TarInfo(f"n{i}")
            archive.addfile(info, io.BytesIO(b""))
        proc = subprocess.run([engine.DOCKER, "import", "-", f"{repo}:{i}"], input=tar.getvalue(),
                              capture_output=True, check=True, timeout=120)
        ids.append(proc.stdout.decode().strip())
    try:
        yield repo, ids
    finally:
        engine.docker("rmi", "-f", *[f"{repo}:{i}" for i in range(4)], check=False)


def test_up_keeps_the_newest_images_and_the_running_one(images) -> None:
    repo, ids = images
    assert hygiene.prune_images(repo, 2, running={ids[0]}, log=lambda _: None) == 1
    left = {iid for _, iid, _ in hygiene.repository_images(repo)}
    assert left == {ids[3], ids[2], ids[0]}


def test_purge_removes_images_registry_azurite_and_cache(images, tmp_path: Path) -> None:
    repo, _ = images
    state = tmp_path / "state"
    for d in ("registry/data/x", "azurite-data/y", "model-cache/sha256/z"):
        (state / d).mkdir(parents=True)
    (state / "keep.txt").write_text("logs and records stay")
    hygiene.purge(state, state / "azurite-data", repo, build_cache=False, log=lambda _: None)
    assert hygiene.repository_images(repo) == []
    assert sorted(p.name for p in state.iterdir()) == ["keep.txt", "registry"]
    assert list((state / "registry").iterdir()) == []
