"""Between the HTTP routes and the predictor, as MLServer's ``DataPlane``: no web framework here.

The request path runs one way: ``http`` reads the request and maps errors to statuses, the data
plane finds the model and whether it is ready, ``protocol`` decodes the body, the ``predictor``
checks it against the model's signature and runs it, and ``protocol`` encodes the answer. The data
plane also loads the model at start-up and keeps the reason a load failed, which ``infer`` returns
with its 503.
"""

from __future__ import annotations

import logging
from typing import Any

from modelship_contract.manifest import ModelManifest, read_manifest

from . import __version__
from .errors import ModelNotFound, NotReady
from .metrics import Metrics
from .predictor import Predictor
from .protocol import decode_infer_request, encode_infer_response, model_metadata

log = logging.getLogger("modelserver")
SERVER_NAME = "modelship"


class DataPlane:
    """One served model: lookup by name and version, readiness, metadata and inference."""

    def __init__(self, predictor: Predictor, metrics: Metrics) -> None:
        self.predictor = predictor
        self.metrics = metrics
        # The manifest alone (cheap, no model file) lets metadata and routing answer while the model loads.
        self.manifest: ModelManifest = predictor.manifest or read_manifest(predictor.model_dir)
        self.load_error: str | None = None
        """Why the model failed to load (the process stays live but never ready)."""

    def load(self) -> None:
        """Load the model (blocking); a failure is logged and kept, never raised."""
        try:
            loaded = self.predictor.load()
        except Exception as exc:  # a failed load keeps the process live but never ready
            self.load_error = str(exc)
            log.error("model failed to load", extra={"error": str(exc)})
            return
        self.metrics.model_info.labels(loaded.name, loaded.version, loaded.sha256).set(1)
        log.info(
            "model loaded",
            extra={
                "model": loaded.ref,
                "sha256": loaded.sha256,
                "load_seconds": round(self.predictor.load_seconds or 0, 4),
            },
        )

    @property
    def ready(self) -> bool:
        return self.predictor.ready

    def model(self, name: str, version: str | None = None, *, loaded: bool = False) -> ModelManifest:
        """The served model's manifest, or ``ModelNotFound`` naming what is served.

        With ``loaded``, a model that is not loaded (yet, or ever) is ``NotReady``, saying why.
        """
        manifest = self.manifest
        if name != manifest.name:
            raise ModelNotFound(f"model {name!r} is not served here; this server serves {manifest.name!r}")
        if version is not None and version != manifest.version:
            raise ModelNotFound(
                f"version {version!r} of model {name!r} is not served here; available: {manifest.version!r}"
            )
        if loaded and not self.predictor.ready:
            raise NotReady(self.load_error or "the model is still loading; retry shortly")
        return manifest

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": []}

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        return model_metadata(self.model(name, version))

    def infer(self, manifest: ModelManifest, body: bytes) -> bytes:
        """Decode, check and run one V2 infer request for ``model(..., loaded=True)``; the response."""
        request = decode_infer_request(body)
        results = self.predictor.infer(request.inputs, request.outputs, on_run=self.metrics.inference.observe)
        first = request.inputs[0].shape
        self.metrics.rows.inc(first[0] if first else 1)
        self.metrics.count_predictions(manifest.name, manifest.version, results)
        return encode_infer_response(manifest, request.id, results)
