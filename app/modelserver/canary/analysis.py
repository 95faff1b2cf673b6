"""Judge a canary against the stable version: error rate, p99 latency, prediction drift.

:func:`judge` is pure (figures in, verdict out) so that every rule is tested on fixed numbers.
A rule without enough evidence (fewer than ``min_requests`` requests or ``min_predictions``
predicted labels on either side, or no latency histogram yet) is *inconclusive*, never failed: a
small sample proves nothing either way, and :func:`analyze` keeps waiting for traffic instead.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from enum import StrEnum

from modelship_contract.canary import AnalysisDefinition

from .prometheus import PrometheusClient

PSI_EPSILON = 1e-4
"""Share given to a label one side never predicted, so that PSI stays finite (a common choice)."""


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclasses.dataclass(frozen=True)
class Figures:
    """What one side (stable or canary) did in the analysis window."""

    requests: float
    errors: float
    p99_seconds: float | None
    """None when the histogram has no observation in the window."""
    labels: Mapping[str, float]
    """Predicted label -> count."""

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None

    @property
    def predictions(self) -> float:
        return sum(self.labels.values())

    def to_dict(self) -> dict:
        return {"requests": round(self.requests, 1), "errors": round(self.errors, 1),
                "error_rate": None if self.error_rate is None else round(self.error_rate, 4),
                "p99_seconds": None if self.p99_seconds is None else round(self.p99_seconds, 4),
                "predictions": round(self.predictions, 1),
                "labels": {k: round(v, 1) for k, v in sorted(self.labels.items())}}


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    status: Status
    value: float | None
    """The figure the rule decided on (rate difference, p99 seconds, PSI)."""
    rule: str
    """The rule, with its thresholds, in words."""

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status.value,
                "value": None if self.value is None else round(self.value, 4), "rule": self.rule}


@dataclasses.dataclass(frozen=True)
class Verdict:
    status: Status
    checks: tuple[Check, ...]
    canary: Figures
    stable: Figures

    def summary(self) -> str:
        parts = [f"{c.name} {c.status.value}" + ("" if c.value is None else f" ({c.value:.4g})")
                 for c in self.checks]
        return f"{self.status.value}: " + ", ".join(parts)

    def to_dict(self) -> dict:
        return {"status": self.status.value, "checks": [c.to_dict() for c in self.checks],
                "canary": self.canary.to_dict(), "stable": self.stable.to_dict()}


def psi(expected: Mapping[str, float], actual: Mapping[str, float], epsilon: float = PSI_EPSILON) -> float:
    """Population Stability Index of ``actual`` against ``expected`` (label -> count)."""
    total_e, total_a = sum(expected.values()), sum(actual.values())
    if total_e <= 0 or total_a <= 0:
        raise ValueError("PSI needs at least one count on each side")
    value = 0.0
    for label in set(expected) | set(actual):
        e = max(expected.get(label, 0.0) / total_e, epsilon)
        a = max(actual.get(label, 0.0) / total_a, epsilon)
        value += (a - e) * math.log(a / e)
    return value


def judge(canary: Figures, stable: Figures, definition: AnalysisDefinition) -> Verdict:
    d = definition
    checks = []

    enough_requests = min(canary.requests, stable.requests) >= d.min_requests
    rule = (f"canary 5xx rate <= stable's + {d.error_rate_margin:g}; needs >= {d.min_requests} requests "
            "per side")
    if not enough_requests or canary.error_rate is None or stable.error_rate is None:
        checks.append(Check("error_rate", Status.INCONCLUSIVE, None, rule))
    else:
        excess = canary.error_rate - stable.error_rate
        checks.append(Check("error_rate", Status.FAIL if excess > d.error_rate_margin else Status.PASS,
                            excess, rule))

    rule = (f"canary p99 <= max({d.p99_ratio:g} x stable p99, stable p99 + {d.p99_margin_seconds:g} s); "
            f"needs >= {d.min_requests} requests per side")
    if not enough_requests or canary.p99_seconds is None or stable.p99_seconds is None:
        checks.append(Check("p99_latency", Status.INCONCLUSIVE, None, rule))
    else:
        limit = max(stable.p99_seconds * d.p99_ratio, stable.p99_seconds + d.p99_margin_seconds)
        checks.append(Check("p99_latency", Status.FAIL if canary.p99_seconds > limit else Status.PASS,
                            canary.p99_seconds, rule))

    rule = (f"{d.drift_test.value} of predicted {d.drift_output!r} <= {d.drift_threshold:g}; needs >= "
            f"{d.min_predictions} predictions per side")
    if min(canary.predictions, stable.predictions) < d.min_predictions:
        checks.append(Check("prediction_drift", Status.INCONCLUSIVE, None, rule))
    else:
        value = psi(stable.labels, canary.labels)
        checks.append(Check("prediction_drift", Status.FAIL if value > d.drift_threshold else Status.PASS,
                            value, rule))

    statuses = {c.status for c in checks}
    # One conclusive failure is enough to stop; a pass needs every rule to have had its evidence.
    status = (Status.FAIL if Status.FAIL in statuses
              else Status.INCONCLUSIVE if Status.INCONCLUSIVE in statuses else Status.PASS)
    return Verdict(status, tuple(checks), canary, stable)


def collect(client: PrometheusClient, definition: AnalysisDefinition, pod_template_hash: str,
            window_seconds: int) -> Figures:
    """Ask Prometheus for one side's figures over the last ``window_seconds``."""

    def scalar(which: str) -> float | None:
        rows = client.query(definition.query(which, pod_template_hash, window_seconds))
        if not rows:
            return None
        value = rows[0][1]
        return None if math.isnan(value) or math.isinf(value) else value

    rows = client.query(definition.query("predictions", pod_template_hash, window_seconds))
    labels = {lab.get("label", ""): value for lab, value in rows if value > 0 and not math.isnan(value)}
    return Figures(requests=scalar("requests") or 0.0, errors=scalar("errors") or 0.0,
                   p99_seconds=scalar("p99_seconds"), labels=labels)


def analyze(client: PrometheusClient, definition: AnalysisDefinition, canary_hash: str, stable_hash: str,
            window_seconds: int | Callable[[], int], wait_seconds: float = 0.0, poll_seconds: float = 5.0,
            on_inconclusive: Callable[[Verdict], None] | None = None) -> Verdict:
    """Collect both sides and judge; while inconclusive, poll again for up to ``wait_seconds``.

    ``window_seconds`` may be a callable, so that a local step's window grows with the wait.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        window = window_seconds() if callable(window_seconds) else window_seconds
        verdict = judge(collect(client, definition, canary_hash, window),
                        collect(client, definition, stable_hash, window), definition)
        if verdict.status is not Status.INCONCLUSIVE or time.monotonic() >= deadline:
            return verdict
        if on_inconclusive is not None:
            on_inconclusive(verdict)
        time.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))
