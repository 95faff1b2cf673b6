"""The image's runtime contract: where things are inside the container and how it is reached.

The Dockerfile cannot import Python, so it writes these values as literals;
``tests/contract/test_image_contract.py`` parses it and compares each one with this module.
Everything else (the server's settings, the Kubernetes Deployment, the local container, the smoke
test and the front door) imports them from here.
"""

from __future__ import annotations

import re

from .signature import IMAGE_TRUST_DIR, TRUST_DIR_ENV

PORT = 8080
"""The port the server listens on inside the container (``EXPOSE``, the container port)."""
UID = 10001
"""The non-root user (and group) the server runs as (``USER UID:UID``)."""
USER = f"{UID}:{UID}"
"""``uid:gid`` as ``docker run --user`` and the Dockerfile's ``USER`` write it."""
MODEL_DIR = "/opt/model"
"""The baked-in model directory (ONNX file, ``manifest.json``, ``model.sig``)."""
APP_DIR = "/opt/app"
"""Where the server's code and this package sit in the image (its ``PYTHONPATH``)."""
READY_PATH = "/v2/health/ready"
"""Readiness route of the Open Inference Protocol: 200 once the model is loaded."""
LIVE_PATH = "/v2/health/live"
"""Liveness route: 200 while the process serves."""

WORKERS = 2
"""Worker processes the image runs (``MODELSHIP_WORKERS``), forked after the model is loaded."""
REQUEST_MEMORY_MIB = 128
"""What one request's tensors may use per worker (``MODELSHIP_REQUEST_MEMORY_MIB``'s default); more
gets 413. ``components.sizing`` counts ``WORKERS`` x this in the memory limit."""

MODEL_DIR_ENV = "MODELSHIP_MODEL_DIR"
"""The server's setting for the model directory (the image sets it to ``MODEL_DIR``)."""
PORT_ENV = "MODELSHIP_PORT"
"""The server's setting for its port (the image sets it to ``PORT``)."""

MODEL_NAME_LABEL = "io.modelship.model.name"
"""Image label: the model's name (the Dockerfile's ``LABEL``, from the ``MODEL_NAME`` build argument)."""
MODEL_VERSION_LABEL = "io.modelship.model.version"
"""Image label: the model's version (from ``MODEL_VERSION``)."""
MODEL_SHA256_LABEL = "io.modelship.model.sha256"
"""Image label: the sha256 of the model's bytes (from ``MODEL_SHA256``); ``unknown`` when not given."""
MODEL_LABELS = (MODEL_NAME_LABEL, MODEL_VERSION_LABEL, MODEL_SHA256_LABEL)
"""The three model labels, in that order: same values on two containers mean the same model."""
__all__ = ["APP_DIR", "IMAGE_TRUST_DIR", "LIVE_PATH", "MODEL_DIR", "MODEL_DIR_ENV", "MODEL_LABELS",
           "MODEL_NAME_LABEL", "MODEL_SHA256_LABEL", "MODEL_VERSION_LABEL", "PORT", "PORT_ENV",
           "READY_PATH", "REQUEST_MEMORY_MIB", "TRUST_DIR_ENV", "UID", "USER", "WORKERS"]

_DIGEST = r"sha256:[0-9a-f]{64}"
DIGEST_RE = re.compile(rf"^{_DIGEST}$")
"""A content digest, ``sha256:<64 hex>`` (an image's, an SBOM artifact's)."""
DIGEST_REF_RE = re.compile(r"^(?P<host>[a-z0-9][a-z0-9.-]*(:[0-9]+)?)/(?P<repo>[a-z0-9][a-z0-9._/-]*)"
                           rf"(:(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}))?@(?P<digest>{_DIGEST})$")
"""An image reference pinned by digest, ``host/repository[:tag]@sha256:<64 hex>``: the only kind
that is tested, promoted or deployed."""
