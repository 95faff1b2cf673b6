"""Disk hygiene of the local flow: what ``make down`` leaves, what ``PURGE=1`` removes, what ``up`` keeps.

A large model is stored in several places on this machine: the model store (Azurite), the model
cache, the build context (``app/model``), the registry, each image and the build cache. So:

* ``down`` empties ``<context>/model`` (the fetched copy; the cache still holds it, so the next
  ``up`` gets it back by a hard link in well under a second);
* ``down --purge`` (``make down PURGE=1``) also removes the project's images, the registry's data,
  Azurite's data and the model cache, and with ``--build-cache`` the engine's BuildKit cache
  (``docker builder prune``: every project's, on an engine that bootstrap started for this one);
* after each successful ``up`` only the newest ``MODELSHIP_KEEP`` (default 3) images of the
  repository and model-cache entries are kept; the running image is always kept. The registry
  keeps its manifests (deleting them needs the registry's delete API and a garbage collection).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from delivery import engine

DEFAULT_KEEP = 3


def keep_from_env(env) -> int:
    raw = env.get("MODELSHIP_KEEP", "").strip()
    if not raw:
        return DEFAULT_KEEP
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise ValueError(f"MODELSHIP_KEEP must be a whole number in 1-100, got {raw!r}")
    return int(raw)


def clear_model_dir(context: Path, log: Callable[[str], None]) -> None:
    """Remove the fetched model from the build context (only a model directory: it has a manifest)."""
    model = context / "model"
    if (model / "manifest.json").is_file():
        size = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
        shutil.rmtree(model)
        log(f"removed the fetched model from {model} ({size} bytes; the model cache keeps it)")


def repository_images(repository_suffix: str) -> list[tuple[str, str, str]]:
    """``(reference, image id, created)`` of the images of a repository (any registry), newest first."""
    out = engine.docker("images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}}\t{{.ID}}",
                        check=False).stdout
    rows = []
    for line in out.splitlines():
        ref, iid = [*line.split("\t"), ""][:2]
        repo = ref.rsplit(":", 1)[0]
        if repo == repository_suffix or repo.endswith("/" + repository_suffix):
            rows.append((ref, iid))
    if not rows:
        return []
    # `docker images` gives creation times to the second; inspect gives them to the nanosecond.
    ids = sorted({iid for _, iid in rows})
    created = dict(line.split(" ", 1) for line in engine.docker(
        "image", "inspect", "--format", "{{.Id}} {{.Created}}", *ids, check=False).stdout.splitlines())
    return sorted(((ref, iid, created.get(iid, "")) for ref, iid in rows), key=lambda r: r[2], reverse=True)


def prune_images(repository: str, keep: int, running: set[str], log: Callable[[str], None]) -> int:
    """Untag and remove all but the newest ``keep`` images of ``repository`` (never a running one)."""
    seen: list[str] = []
    removed = 0
    for ref, iid, _ in repository_images(repository):
        if iid not in seen:
            seen.append(iid)
        if len(seen) <= keep or iid in running:
            continue
        if engine.docker("rmi", ref, check=False).returncode == 0:
            removed += 1
    if removed:
        log(f"removed {removed} old image tags of {repository} (keeping the newest {keep})")
    return removed


def prune_cache(cache_dir: Path, keep: int, log: Callable[[str], None]) -> int:
    """Keep the ``keep`` most recently used model-cache entries (a hit links the file: its ctime)."""
    entries = [p for p in (cache_dir / "sha256").glob("*") if p.is_file() and not p.name.endswith(".verified")
               and not p.name.startswith(".")]
    entries.sort(key=lambda p: p.stat().st_ctime_ns, reverse=True)
    freed = 0
    for old in entries[keep:]:
        freed += old.stat().st_size
        old.unlink(missing_ok=True)
        old.with_name(f"{old.name}.verified").unlink(missing_ok=True)
    if freed:
        log(f"removed {len(entries) - keep} old model-cache entries ({freed} bytes; keeping {keep})")
    return len(entries[keep:])


def purge(state_dir: Path, azurite_dir: Path, repository: str, build_cache: bool,
          log: Callable[[str], None]) -> None:
    """Remove what the local flow stored (call after ``down`` has stopped every service)."""
    if engine.engine_available():
        refs = [ref for ref, _, _ in repository_images(repository)]
        if refs:
            engine.docker("rmi", "-f", *refs, check=False)
            log(f"removed {len(refs)} images of {repository}")
        if build_cache:
            engine.docker("builder", "prune", "-a", "-f", check=False, timeout=600)
            log("pruned the build cache")
    for path, what in ((state_dir / "registry" / "data", "registry data"), (azurite_dir, "Azurite data"),
                       (state_dir / "model-cache", "model cache")):
        if path.exists():
            shutil.rmtree(path)
            log(f"removed the {what} ({path})")
