"""Prometheus metrics: requests, latency, inference time, rows, and the model's identity.

With several uvicorn workers the values live in ``PROMETHEUS_MULTIPROC_DIR`` (set by ``__main__``
under /tmp before any worker starts, so a read-only root filesystem is fine) and ``/metrics``
aggregates every worker; with one process they stay in this instance's own registry.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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

    def exposition(self) -> bytes:
        path = multiprocess_dir()
        if path:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=path)
            return generate_latest(registry)
        return generate_latest(self.registry)
