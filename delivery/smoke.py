"""Post-deploy smoke test of a model server speaking the Open Inference Protocol (KServe V2).

One script for the Azure pipeline, the GitHub workflow and the local ``make up``:

1. waits for ``GET {url}/v2/health/ready`` with a bounded retry (``--timeout``, ``--interval``);
2. reads ``GET {url}/v2/models/{model}`` and checks the served version;
3. sends one inference whose answer is known (the first image of scikit-learn's digits, a "0")
   and checks the ``label`` output and the ``model_version`` of the response.

Standard library only (urllib), so it runs on a bare pipeline agent before any ``pip install``.
Exit codes: 0 passed, 1 the smoke test failed, 2 bad arguments.

    python -m delivery.smoke --url http://1.2.3.4 --model digits --expect-version 2024-06-01
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from modelship_contract import image as image_contract
from modelship_contract.manifest import NAME_RE

DIGIT_ZERO: tuple[float, ...] = (
    0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0,
    0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8, 0,
    0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0,
    0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0,
)  # fmt: skip
"""``sklearn.datasets.load_digits().data[0]``: an 8x8 image of a 0 (pixel values 0..16)."""
EXPECTED_LABEL = 0
INPUT_NAME = "input"
LABEL_OUTPUT = "label"

_MAX_REQUEST_S = 10.0
"""Upper bound of one HTTP request, so a hung server cannot outlast ``timeout``."""


class SmokeError(RuntimeError):
    """The deployment failed its smoke test; the message says which check and what was seen."""


@dataclasses.dataclass(frozen=True)
class SmokeResult:
    """What a passing smoke test observed."""

    url: str
    model: str
    version: str
    """Model version the server reported (metadata and inference response agree)."""
    label: int
    ready_after_s: float
    """Seconds from the first readiness probe until the server answered ready."""
    attempts: int
    """Readiness probes sent."""
    infer_ms: float
    """Round trip of the one inference request."""


def _validate(url: str, model: str, timeout: float, interval: float) -> str:
    if not re.match(r"^https?://[^/\s]+", url or ""):
        raise ValueError(f"--url must be an http:// or https:// URL with a host, got {url!r}")
    if not NAME_RE.match(model or ""):
        raise ValueError(f"--model must be a lowercase RFC 1123 label (e.g. digits), got {model!r}")
    if not timeout > 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {timeout}")
    if not interval > 0:
        raise ValueError(f"--interval must be > 0 seconds, got {interval}")
    return url.rstrip("/")


def _request(method: str, url: str, body: Any | None, timeout: float) -> tuple[int, Any]:
    """Return (status, parsed JSON or raw text); raise ``OSError`` when no HTTP answer came."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=max(timeout, 0.1)) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text) if text else None
    except json.JSONDecodeError:
        return status, text


def _brief(payload: Any) -> str:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return text if len(text) <= 300 else text[:300] + "..."


def wait_ready(base: str, timeout: float, interval: float, log=None, gone=None) -> tuple[float, int]:
    """Poll the readiness endpoint until 200 or ``timeout``; return (seconds waited, probes).

    ``gone`` (optional) is asked before each probe; a string it returns (the server's process or
    container has ended, and why) fails the wait at once with that reason instead of at the deadline.
    """
    url = f"{base}{image_contract.READY_PATH}"
    started = time.monotonic()
    deadline = started + timeout
    attempts, last = 0, "no answer yet"
    while True:
        attempts += 1
        ended = gone() if gone else None
        if ended:
            raise SmokeError(f"not ready: {ended}")
        remaining = deadline - time.monotonic()
        try:
            status, payload = _request("GET", url, None, min(_MAX_REQUEST_S, remaining))
            if status == 200:
                return time.monotonic() - started, attempts
            last = f"HTTP {status} {_brief(payload)}"
            shown = last
        except (OSError, ValueError) as exc:  # refused, reset, DNS, timeout, bad status line
            last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            shown = "no HTTP answer yet, still starting"  # the exception stays for the final error
        if log and (attempts == 1 or attempts % 10 == 0):
            waited = time.monotonic() - started
            log(f"waiting for {url} ({shown}; {waited:.0f}/{timeout:.0f} s)")
        if time.monotonic() + interval > deadline:
            raise SmokeError(
                f"not ready: {url} did not answer 200 within {timeout:g} s "
                f"({attempts} probes every {interval:g} s); last answer: {last}"
            )
        time.sleep(interval)


def _json_call(method: str, url: str, body: Any | None, what: str) -> dict:
    try:
        status, payload = _request(method, url, body, _MAX_REQUEST_S)
    except (OSError, ValueError) as exc:
        raise SmokeError(f"{what}: {method} {url} got no answer: {getattr(exc, 'reason', exc)}") from exc
    if status != 200:
        raise SmokeError(f"{what}: {method} {url} answered HTTP {status}: {_brief(payload)}")
    if not isinstance(payload, dict):
        raise SmokeError(f"{what}: {method} {url} did not answer a JSON object: {_brief(payload)}")
    return payload


def infer_request() -> dict:
    """The one V2 inference request with a known answer (label 0)."""
    return {
        "id": "modelship-smoke",
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [1, len(DIGIT_ZERO)],
                    "data": [float(v) for v in DIGIT_ZERO]}],
    }


def _label(response: dict, url: str) -> int:
    outputs = response.get("outputs")
    if not isinstance(outputs, list):
        raise SmokeError(f"inference: {url} answered without an 'outputs' list: {_brief(response)}")
    names = [o.get("name") for o in outputs if isinstance(o, dict)]
    out = next((o for o in outputs if isinstance(o, dict) and o.get("name") == LABEL_OUTPUT), None)
    if out is None:
        raise SmokeError(f"inference: no output named {LABEL_OUTPUT!r} in the answer; outputs: {names}")
    data = out.get("data")
    while isinstance(data, list) and len(data) == 1 and isinstance(data[0], list):
        data = data[0]  # tolerate the nested (row-major) form of the tensor
    if not isinstance(data, list) or len(data) != 1 or isinstance(data[0], bool):
        raise SmokeError(f"inference: output {LABEL_OUTPUT!r} should hold one label, got {_brief(out)}")
    try:
        return int(data[0])
    except (TypeError, ValueError):
        raise SmokeError(f"inference: label {data[0]!r} is not an integer") from None


def run_smoke(
    url: str,
    model: str = "digits",
    expect_version: str | None = None,
    timeout: float = 120.0,
    interval: float = 2.0,
    log=None,
    gone=None,
) -> SmokeResult:
    """Smoke-test the server at ``url``; raise :class:`SmokeError` naming the failed check.

    ``timeout`` bounds the wait for readiness; the metadata and inference calls that follow
    have their own 10 s bound each. ``log`` (optional) receives progress lines; ``gone`` see
    :func:`wait_ready`.
    """
    base = _validate(url, model, timeout, interval)
    ready_after, attempts = wait_ready(base, timeout, interval, log, gone)

    meta_url = f"{base}/v2/models/{model}"
    meta = _json_call("GET", meta_url, None, f"model {model!r} metadata")
    versions = meta.get("versions") or []
    if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
        raise SmokeError(f"model metadata: 'versions' should be a list of strings, got {versions!r}")

    started = time.monotonic()
    infer_url = f"{meta_url}/infer"
    response = _json_call("POST", infer_url, infer_request(), "inference")
    infer_ms = (time.monotonic() - started) * 1000
    label = _label(response, infer_url)
    if label != EXPECTED_LABEL:
        raise SmokeError(
            f"wrong answer: the digit image of a {EXPECTED_LABEL} was labelled {label} by {infer_url}"
        )

    reported = response.get("model_version")
    seen = sorted(set(versions) | ({reported} if isinstance(reported, str) and reported else set()))
    if not seen:
        raise SmokeError(f"model version: neither {meta_url} 'versions' nor the inference's "
                         "'model_version' names a version")
    if len(seen) > 1:
        raise SmokeError(f"model version: the server reports several versions {seen} "
                         "(metadata 'versions' and inference 'model_version' disagree)")
    version = seen[0]
    if expect_version is not None and version != expect_version:
        raise SmokeError(
            f"wrong model version: expected {model}@{expect_version}, the server at {base} serves "
            f"{model}@{version}"
        )
    return SmokeResult(base, model, version, label, round(ready_after, 3), attempts, round(infer_ms, 2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m delivery.smoke",
        description="Smoke-test a deployed model server (Open Inference Protocol): readiness, "
                    "one known answer, the model version.",
    )
    parser.add_argument("--url", required=True, help="base URL of the server, e.g. http://20.1.2.3")
    parser.add_argument("--model", default="digits", help="model name (default: digits)")
    parser.add_argument("--expect-version", default=None, help="fail unless the server serves this version")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness (120)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between readiness probes (2)")
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(f"smoke: {line}", file=sys.stderr, flush=True)

    try:
        result = run_smoke(args.url, args.model, args.expect_version, args.timeout, args.interval, log)
    except ValueError as exc:
        parser.print_usage(sys.stderr)
        print(f"smoke: error: {exc}", file=sys.stderr)
        return 2
    except SmokeError as exc:
        print(f"smoke: FAILED: {exc}", file=sys.stderr)
        return 1
    print(
        f"smoke: PASSED {result.url} serves {result.model}@{result.version}: ready after "
        f"{result.ready_after_s:.1f} s ({result.attempts} probes), label {result.label} as expected, "
        f"inference {result.infer_ms:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
