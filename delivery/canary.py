"""The local canary: the front door shifts traffic to the new container in steps, Prometheus watches.

After the new container passed its smoke test and HAProxy's health check (weight 0, no traffic
yet), :func:`run_canary` walks the analysis definition's steps (10 % -> 50 % by default): set the
front door's weights, hold the step, then let :func:`modelserver.canary.analysis.analyze` compare
canary and stable in the local Prometheus, exactly as the cloud's AnalysisTemplate does. A pass
moves on; after the last step the canary takes all traffic (promotion). A failure (or no verdict
within ``max_wait_seconds``) sets the canary's weight to 0 and drains it: the stable version, which
never stopped, serves every request again. Nothing a client sent is lost either way, which
:class:`Traffic` measures: while the canary runs it sends the same fixed batch of digits images
through the front door and counts every answer that was not a 200.

Because every request carries the same batch, an unchanged model's label counts are exactly
proportional on both sides whatever the split (PSI 0), and a drifting one's differ by far: the
verdict does not depend on which requests went where, nor on chance.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from modelserver.canary.analysis import Status, Verdict, analyze
from modelship_contract.canary import AnalysisDefinition
from modelship_contract.image import MODEL_LABELS, MODEL_SHA256_LABEL, MODEL_VERSION_LABEL

FAILURE_BACKOFF = 0.1
"""Seconds a client waits after a failed request before the next one."""
TRAFFIC_ROWS = 50
"""Digits images per synthetic request (the first 50 of scikit-learn's set: every class appears)."""


class TrafficSplitter(Protocol):
    """What the canary needs from the front door (:class:`delivery.frontdoor.FrontDoor`)."""

    def set_weights(self, weights: Mapping[int, int]) -> None: ...

    def remove(self, port: int, timeout: float = 30.0) -> bool: ...


@dataclasses.dataclass(frozen=True)
class CanarySettings:
    """How the local release canaries (``MODELSHIP_CANARY*`` in the environment)."""

    enabled: bool = True
    """``MODELSHIP_CANARY=off`` releases all at once (after the smoke test) instead."""
    code_only: bool = False
    """``MODELSHIP_CANARY=always`` also canaries a release whose model (version and sha256) is the live one's.
    By default (``on``) such a code-only release goes all at once after its pre-push test and smoke test:
    ``docs/large-models.md`` says why."""
    definition: AnalysisDefinition = dataclasses.field(default_factory=lambda: AnalysisDefinition.load(None))
    """``MODELSHIP_CANARY_DEFINITION=<file.json>`` overrides the built-in analysis definition."""
    prometheus_port: int = 9090
    """``MODELSHIP_PROMETHEUS_PORT``: the local Prometheus on 127.0.0.1."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CanarySettings:
        env = os.environ if env is None else env
        raw = env.get("MODELSHIP_CANARY", "on").strip().lower()
        if raw not in ("on", "off", "always"):
            raise ValueError(f"MODELSHIP_CANARY must be on, off or always, got {raw!r}")
        port_raw = env.get("MODELSHIP_PROMETHEUS_PORT", "9090")
        try:
            port = int(port_raw)
        except ValueError:
            raise ValueError(f"MODELSHIP_PROMETHEUS_PORT must be a port number, got {port_raw!r}") from None
        if not 1024 <= port <= 65535:
            raise ValueError(f"MODELSHIP_PROMETHEUS_PORT must be a port in 1024-65535, got {port}")
        path = env.get("MODELSHIP_CANARY_DEFINITION")
        return cls(enabled=raw != "off", code_only=raw == "always",
                   definition=AnalysisDefinition.load(Path(path) if path else None), prometheus_port=port)


@dataclasses.dataclass(frozen=True)
class Side:
    """One version behind the front door."""

    port: int
    """Its loopback port (the front door's backend, Prometheus' target)."""
    tag: str
    """Its pod-template-hash stand-in (Prometheus label), e.g. the image id's first 12 hex digits."""
    version: str
    sha256: str = ""
    """Its model's sha256 (the container's label), so a rollback can check what kept serving."""


@dataclasses.dataclass
class StepResult:
    weight: int
    verdict: Verdict
    seconds: float
    """From setting the weight to the verdict (hold + any wait for evidence)."""


@dataclasses.dataclass
class CanaryResult:
    promoted: bool
    steps: list[StepResult]
    seconds: float
    reason: str = ""


def traffic_rows():
    """The batch every canary request carries (``TRAFFIC_ROWS`` x 64 pixels, the same every time)."""
    from sklearn.datasets import load_digits

    return load_digits().data[:TRAFFIC_ROWS]


class Traffic:
    """Clients of the front door during a canary: the same batch, over and over, failures counted."""

    def __init__(self, endpoint: str, model: str, clients: int = 2, timeout: float = 30.0):
        import json

        rows = traffic_rows()
        self.body = json.dumps({"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32",
                                            "data": rows.ravel().tolist()}]}).encode()
        self.url = f"{endpoint}/v2/models/{model}/infer"
        self.clients = clients
        self.timeout = timeout
        self.ok = 0
        self.failed = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout, headers={"Content-Type": "application/json"}) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(self.url, content=self.body)
                    good, what = response.status_code == 200, f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    good, what = False, f"{type(exc).__name__}: {exc}"
                with self._lock:
                    if good:
                        self.ok += 1
                    else:
                        self.failed += 1
                        if len(self.failures) < 5:
                            self.failures.append(what)
                if not good:
                    self._stop.wait(FAILURE_BACKOFF)  # never hammer a front door that is failing

    def __enter__(self) -> Traffic:
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)

    def summary(self) -> str:
        text = f"{self.ok + self.failed} client requests, {self.failed} failed"
        return text + (f" ({'; '.join(self.failures)})" if self.failures else "")


def describe(verdict: Verdict) -> str:
    """One line with the figures the step was decided on."""
    c, s = verdict.canary, verdict.stable

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value * 1000:.0f} ms"

    def rate(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2%}"

    drift = next(x for x in verdict.checks if x.name == "prediction_drift")
    return (f"requests {c.requests:.0f} vs {s.requests:.0f}, "
            f"errors {rate(c.error_rate)} vs {rate(s.error_rate)}, "
            f"p99 {ms(c.p99_seconds)} vs {ms(s.p99_seconds)}, "
            f"psi {'n/a' if drift.value is None else f'{drift.value:.3f}'} -> {verdict.status.value}")


def run_canary(door: TrafficSplitter, prometheus, stable: Side, canary: Side, definition: AnalysisDefinition,
               log: Callable[[str], None], poll_seconds: float = 1.0) -> CanaryResult:
    """Walk the steps; promote (all weight to the canary) or roll back (none). Never raises on a verdict.

    The canary must already be a backend of ``door`` with weight 0; ``prometheus`` is a
    :class:`delivery.prometheus.LocalPrometheus`. On promotion the caller drains the stable
    container (the front door's switch); on rollback the canary is already out of the front door.
    """
    started = time.monotonic()
    prometheus.set_targets([(stable.port, stable.tag), (canary.port, canary.tag)])
    prometheus.wait_scraped(stable.tag)
    prometheus.wait_scraped(canary.tag)
    client = prometheus.client()
    results: list[StepResult] = []
    for number, step in enumerate(definition.steps, 1):
        step_started = time.monotonic()
        door.set_weights({canary.port: step.weight, stable.port: 100 - step.weight})
        log(f"canary step {number}/{len(definition.steps)}: {step.weight}% of requests to {canary.version}, "
            f"holding {step.hold_seconds} s")
        time.sleep(step.hold_seconds)

        def window(since: float = step_started) -> int:
            return math.ceil(time.monotonic() - since) + 1

        def waiting(v: Verdict) -> None:
            log(f"  not enough evidence yet ({describe(v)}); waiting for more traffic")

        verdict = analyze(client, definition, canary.tag, stable.tag, window,
                          wait_seconds=definition.max_wait_seconds, poll_seconds=poll_seconds,
                          on_inconclusive=waiting)
        results.append(StepResult(step.weight, verdict, time.monotonic() - step_started))
        log(f"  analysis: {describe(verdict)}")
        if verdict.status is not Status.PASS:
            # Name what failed; only with no failure, what lacked evidence.
            failed = [c for c in verdict.checks if c.status is Status.FAIL]
            reason = ", ".join(
                f"{c.name} {c.status.value}" + ("" if c.value is None else f" ({c.value:.4g})")
                for c in failed or [c for c in verdict.checks if c.status is not Status.PASS]
            )
            door.set_weights({stable.port: 100, canary.port: 0})
            door.remove(canary.port)
            log(f"canary {canary.version} rolled back at {step.weight}%: {reason}; {stable.version} serves "
                "every request")
            return CanaryResult(False, results, time.monotonic() - started, reason)
    door.set_weights({canary.port: 100, stable.port: 0})
    log(f"canary {canary.version} passed {len(results)} analyses: promoted to 100%")
    return CanaryResult(True, results, time.monotonic() - started)


class CanaryFailed(RuntimeError):
    """The canary was rolled back; the message has the step, the failing rules and the figures, and
    ``record`` the whole record (also in ``<state_dir>/canary-<instance>.json``)."""

    def __init__(self, message: str, record: dict):
        super().__init__(message)
        self.record = record


def release(settings, door, live: str, nxt: str, port: int, model: str, version: str) -> CanaryResult | None:
    """Canary ``nxt`` (already in ``door`` with weight 0) against the running ``live`` container.

    Called by :func:`delivery.rollout.deploy` between adding the new container to the front door and
    switching to it. Returns None when there is nothing to compare with (first release) or the
    canary is off; raises :class:`CanaryFailed` after a rollback, so that the caller removes the
    new container exactly as for a failed smoke test. The figures go to
    ``<state_dir>/canary-<instance>.json``.
    """
    import json

    from delivery import engine
    from delivery.prometheus import LocalPrometheus

    config = CanarySettings.from_env()
    state = engine.container_state(live)
    if not config.enabled or not state or not state["State"].get("Running"):
        return None
    new_state = engine.container_state(nxt)
    if not new_state:
        raise engine.DockerError(f"container {nxt} is gone before its canary")
    labels, new_labels = state["Config"]["Labels"] or {}, new_state["Config"]["Labels"] or {}
    same = same_model(labels, new_labels)
    if same and not config.code_only:
        _log(f"canary skipped: {model}@{version} (sha256 {same[:12]}) is the model already serving, only "
             "the code changed, and its pre-push test and smoke test passed (MODELSHIP_CANARY=always "
             "canaries code-only releases too)")
        return None
    stable = Side(engine.published_port(state, settings.run_options.container_port), state["Id"][:12],
                  labels.get(MODEL_VERSION_LABEL, "stable"), labels.get(MODEL_SHA256_LABEL, ""))
    canary = Side(port, new_state["Id"][:12], version, new_labels.get(MODEL_SHA256_LABEL, ""))
    prometheus = LocalPrometheus(settings.state_dir, config.prometheus_port)
    prometheus.ensure()
    log = _log
    log(f"canary: {canary.version} against {stable.version}; Prometheus {prometheus.url}, "
        f"steps {' -> '.join(f'{s.weight}%' for s in config.definition.steps)} -> 100%")
    with Traffic(door.endpoint, model) as traffic:
        result = run_canary(door, prometheus, stable, canary, config.definition, log)
    log(f"canary clients: {traffic.summary()}")
    prometheus.set_targets([(canary.port, canary.tag)] if result.promoted else [(stable.port, stable.tag)])
    record = {
        "stable": dataclasses.asdict(stable), "canary": dataclasses.asdict(canary),
        "promoted": result.promoted, "reason": result.reason, "seconds": round(result.seconds, 1),
        "clients": {"ok": traffic.ok, "failed": traffic.failed, "failures": traffic.failures},
        "steps": [{"weight": s.weight, "seconds": round(s.seconds, 1), **s.verdict.to_dict()}
                  for s in result.steps],
    }
    path = settings.state_dir / f"canary-{settings.instance}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    if not result.promoted:
        raise CanaryFailed(
            f"canary rolled back at {result.steps[-1].weight}%: {result.reason} "
            f"({describe(result.steps[-1].verdict)}); clients: {traffic.summary()}",
            {**record, "path": str(path)},
        )
    return result


def same_model(live: Mapping[str, str], new: Mapping[str, str]) -> str | None:
    """The model's sha256 when two containers' labels name the same model version and bytes, else None."""
    values = [live.get(k) for k in MODEL_LABELS]
    if all(v and v != "unknown" for v in values) and values == [new.get(k) for k in MODEL_LABELS]:
        return values[2]
    return None


def _log(msg: str) -> None:
    print(f"[local] {msg}", flush=True)
