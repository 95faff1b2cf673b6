"""The canary analysis definition: traffic steps, Prometheus queries and thresholds, in one place.

The local runner, the Argo Rollouts Rollout (its ``setWeight``/``pause`` steps) and the
AnalysisTemplate (its Job's arguments) are all generated from :data:`DEFAULT`. A JSON file with
the same keys (``python -m modelserver.canary show`` prints it) may override it, for example to
hold each step longer; every key is validated and a bad value names the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

SELECTOR_LABEL = "rollouts_pod_template_hash"
"""Prometheus label that tells the two sides apart: Argo Rollouts' pod-template hash in the
cluster (relabelled from the pod label ``rollouts-pod-template-hash``); locally the runner gives each
container's scrape target the same label (its image id)."""
_HASH_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
POD_MODEL_NAME_LABEL = "modelship.io/model-name"
POD_MODEL_VERSION_LABEL = "modelship.io/model-version"
"""Labels of the Rollout's pod template naming the model it serves: after an aborted canary,
``delivery.argo_status`` reads them from the stable ReplicaSet (what keeps serving) and the new spec
(what was rejected), so the pipeline can move the alias back."""


class DefinitionError(ValueError):
    """An analysis definition that breaks a rule; the message names the key and what is allowed."""


class DriftTest(StrEnum):
    """How the predicted-label distributions are compared."""

    PSI = "psi"
    """Population Stability Index over the label histogram (0: identical; > 0.25 usually means a shift)."""


@dataclasses.dataclass(frozen=True)
class Step:
    """Send ``weight`` percent of requests to the canary, hold ``hold_seconds``, then analyse."""

    weight: int
    hold_seconds: int


def _growth(series: str) -> str:
    """How much a counter grew in the window, exactly, for series old and new.

    ``increase()`` ignores a series' first sample, so a canary whose first scrape already holds all
    its requests (a burst between two scrapes) would show 0 of them. Here a series that existed at
    the window's start contributes its growth since then (never negative: a restart counts 0, which
    at worst delays a verdict), and a series born within the window contributes its whole value
    (prometheus_client counters start at 0).
    """
    return f"(clamp_min({series} - {series} offset {{window}}, 0) or {series})"


_REQUESTS = 'modelship_http_requests_total{{route="infer",{selector}}}'
_ERRORS = 'modelship_http_requests_total{{route="infer",status=~"5..",{selector}}}'
_BUCKETS = 'modelship_http_request_duration_seconds_bucket{{route="infer",{selector}}}'
_PREDICTIONS = 'modelship_predictions_total{{output="{output}",{selector}}}'


@dataclasses.dataclass(frozen=True)
class Queries:
    """PromQL templates: ``{selector}`` is one side's ``label="hash"``, ``{window}`` a duration like ``60s``,
    ``{output}`` the compared model output."""

    requests: str = f"sum({_growth(_REQUESTS)})"
    errors: str = f"sum({_growth(_ERRORS)})"
    p99_seconds: str = f"histogram_quantile(0.99, sum by (le) ({_growth(_BUCKETS)}))"
    predictions: str = f"sum by (label) ({_growth(_PREDICTIONS)})"


@dataclasses.dataclass(frozen=True)
class AnalysisDefinition:
    """What a canary must show, at the end of every step, to earn the next one."""

    steps: tuple[Step, ...] = (Step(10, 30), Step(50, 30))
    """Canary traffic shares, each held then analysed; after the last one passes, 100 % (promotion)."""
    min_requests: int = 100
    """Inference requests each side must have served in the window, else the verdict is inconclusive."""
    min_predictions: int = 500
    """Predicted labels each side must have produced in the window before drift is judged."""
    max_wait_seconds: int = 300
    """How long an inconclusive analysis keeps waiting for traffic before the release is stopped."""
    error_rate_margin: float = 0.01
    """The canary fails if its 5xx rate exceeds the stable's by more than this (absolute)."""
    p99_ratio: float = 2.0
    """The canary fails on latency only if its p99 is above ``p99_ratio`` x the stable's p99 ..."""
    p99_margin_seconds: float = 0.25
    """... and also more than this many seconds above it (small absolute noise never fails)."""
    drift_test: DriftTest = DriftTest.PSI
    drift_threshold: float = 0.2
    """The canary fails if the drift statistic exceeds this."""
    drift_output: str = "label"
    """The model output whose predicted labels are compared."""
    window_seconds: int = 300
    """Default query window in the cloud; the local runner passes the time since the step began."""
    queries: Queries = dataclasses.field(default_factory=Queries)

    def __post_init__(self) -> None:
        if not self.steps:
            raise DefinitionError("steps must list at least one {weight, hold_seconds}")
        previous = 0
        for i, step in enumerate(self.steps):
            if not isinstance(step.weight, int) or not previous < step.weight < 100:
                raise DefinitionError(
                    f"steps[{i}].weight must be an integer above the previous step's ({previous}) and "
                    f"below 100 (100 % is the promotion after the last step), got {step.weight!r}"
                )
            if not isinstance(step.hold_seconds, int) or not 0 <= step.hold_seconds <= 86400:
                raise DefinitionError(f"steps[{i}].hold_seconds must be 0-86400, got {step.hold_seconds!r}")
            previous = step.weight
        for key in ("min_requests", "min_predictions", "max_wait_seconds", "window_seconds"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise DefinitionError(f"{key} must be a positive integer, got {value!r}")
        for key, low, high in (("error_rate_margin", 0.0, 1.0), ("p99_ratio", 1.0, 100.0),
                               ("p99_margin_seconds", 0.0, 3600.0), ("drift_threshold", 0.0, 100.0)):
            value = getattr(self, key)
            if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
                raise DefinitionError(f"{key} must be a number in [{low}, {high}], got {value!r}")
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_.:-]*$", self.drift_output):
            raise DefinitionError(f"drift_output must be an output name, got {self.drift_output!r}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["steps"] = [dataclasses.asdict(s) for s in self.steps]
        data["drift_test"] = self.drift_test.value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnalysisDefinition:
        if not isinstance(data, Mapping):
            raise DefinitionError("an analysis definition must be a JSON object")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise DefinitionError(f"unknown keys {unknown}; allowed: {sorted(fields)}")
        values = dict(data)
        if "steps" in values:
            steps = values["steps"]
            if not isinstance(steps, list) or not all(
                isinstance(s, Mapping) and set(s) == {"weight", "hold_seconds"} for s in steps
            ):
                raise DefinitionError("steps must be a list of objects with exactly weight and hold_seconds")
            values["steps"] = tuple(Step(s["weight"], s["hold_seconds"]) for s in steps)
        if "drift_test" in values:
            try:
                values["drift_test"] = DriftTest(values["drift_test"])
            except ValueError:
                allowed = ", ".join(t.value for t in DriftTest)
                raise DefinitionError(
                    f"drift_test {values['drift_test']!r} is not one of: {allowed}"
                ) from None
        if "queries" in values:
            queries = values["queries"]
            known = {f.name for f in dataclasses.fields(Queries)}
            if not isinstance(queries, Mapping) or set(queries) - known:
                raise DefinitionError(f"queries must be an object with keys among {sorted(known)}")
            values["queries"] = Queries(**queries)
        return cls(**values)

    @classmethod
    def load(cls, path: Path | None) -> AnalysisDefinition:
        """:data:`DEFAULT`, or the definition in the JSON file ``path``."""
        if path is None:
            return DEFAULT
        try:
            data = json.loads(Path(path).read_text())
        except OSError as exc:
            raise DefinitionError(f"cannot read the analysis definition {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise DefinitionError(f"the analysis definition {path} is not JSON: {exc}") from None
        return cls.from_dict(data)

    def query(self, which: str, pod_template_hash: str, window_seconds: int) -> str:
        """The PromQL for one figure of one side (``which`` is a field of :class:`Queries`)."""
        if not _HASH_RE.match(pod_template_hash):
            raise DefinitionError(f"pod template hash {pod_template_hash!r} must be 1-64 of [A-Za-z0-9._-]")
        selector = f'{SELECTOR_LABEL}="{pod_template_hash}"'
        template = getattr(self.queries, which)
        return template.format(selector=selector, window=f"{int(window_seconds)}s", output=self.drift_output)


DEFAULT = AnalysisDefinition()
"""The one analysis definition used by ``make up`` and by the cloud Rollout."""
