"""Prometheus metrics: requests, latency, inference time, rows, predicted labels, the model's identity.

With several uvicorn workers the values live in ``PROMETHEUS_MULTIPROC_DIR`` (set by ``__main__``
under /tmp before any worker starts, so a read-only root filesystem is fine) and ``/metrics``
aggregates every worker; with one process they stay in this instance's own registry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_LABEL_VALUES = 100
"""Distinct predicted labels counted per output; more are counted as ``other`` (bounded series)."""


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "modelship_http_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "modelship_http_request_duration_seconds",
            "Time from request start to response end.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference = Histogram(
            "modelship_inference_duration_seconds",
            "ONNX Runtime run time per request.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rows = Counter(
            "modelship_inference_rows",
            "Rows (batch items) inferred.",
            registry=self.registry,
        )
        self.model_info = Gauge(
            "modelship_model_info",
            "The served model: 1 once loaded, labelled with name, version, sha256.",
            ["name", "version", "sha256"],
            registry=self.registry,
            multiprocess_mode="max",
        )

        self.predictions = Counter(
            "modelship_predictions",
            "Predicted labels by model version and output: the canary analysis compares their distribution.",
            ["model", "version", "output", "label"],
            registry=self.registry,
        )
        self._label_values: dict[str, set[str]] = {}

    def count_predictions(self, model: str, version: str, results: Mapping[str, np.ndarray]) -> None:
        """Count each row's label for every class-label output (integer or string, one value per row)."""
        for output, array in results.items():
            if array.ndim != 1 or array.dtype.kind not in "iuUSOb":
                continue  # scores, probabilities, embeddings: not a label
            seen = self._label_values.setdefault(output, set())
            values, counts = np.unique(array, return_counts=True)
            for value, count in zip(values.tolist(), counts.tolist(), strict=True):
                label = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
                if label not in seen:
                    if len(seen) >= MAX_LABEL_VALUES:
                        label = "other"
                    else:
                        seen.add(label)
                self.predictions.labels(model, version, output, label).inc(count)

    def exposition(self) -> bytes:
        path = multiprocess_dir()
        if path:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=path)
            return generate_latest(registry)
        return generate_latest(self.registry)
