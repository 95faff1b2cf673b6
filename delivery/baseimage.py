"""The local base image: Debian bookworm + Python 3.11, built here with debootstrap + ``docker import``.

Docker Hub cannot be assumed reachable (it is not on this kind of machine), so nothing local pulls
``python:3.11-slim``: ``make up``, ``make bench`` and the tests' session fixture all call
:func:`ensure_base_image`, which builds the image once with ``scripts/build-base-image.sh`` (a few
minutes; one build at a time per machine, under a lock) and reuses it afterwards. The cloud build
keeps ``python:3.11-slim`` (``settings.base_image``): ACR Tasks and hosted agents can pull it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from delivery import engine

ROOT = Path(__file__).resolve().parent.parent
LOCAL_BASE = "modelship/python-base:3.11-bookworm-2"
"""``-2``: keeps the packages' copyright files (the SBOM's licences); a new recipe takes a new tag, so
every machine builds it once instead of keeping an older image under the same name."""
BUILD_SCRIPT = ROOT / "scripts" / "build-base-image.sh"
BUILD_TIMEOUT = 1800.0
"""Seconds the debootstrap build may take (about 3 minutes on this machine; mirrors vary)."""


class BaseImageError(RuntimeError):
    """The base image could not be built; the message names the script and its log."""


def ensure_base_image(ref: str = LOCAL_BASE, log_file: Path | None = None,
                      log: Callable[[str], None] = print) -> str:
    """Return ``ref``, building it first with scripts/build-base-image.sh if it is not present."""
    if engine.image_exists(ref):
        return ref
    log(f"building the base image {ref} with debootstrap (once per machine, a few minutes)"
        + (f"; log: {log_file}" if log_file else ""))
    started = time.monotonic()
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        proc = subprocess.run(["bash", str(BUILD_SCRIPT), ref], stdout=out, stderr=subprocess.STDOUT,
                              check=False, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BaseImageError(f"{BUILD_SCRIPT.name} did not finish within {BUILD_TIMEOUT:.0f} s") from None
    finally:
        if log_file:
            out.close()
    if proc.returncode != 0 or not engine.image_exists(ref):
        where = f" (log: {log_file})" if log_file else ""
        raise BaseImageError(f"scripts/build-base-image.sh could not build {ref} "
                             f"(exit {proc.returncode}){where}")
    log(f"built the base image {ref} in {time.monotonic() - started:.0f} s")
    return ref
