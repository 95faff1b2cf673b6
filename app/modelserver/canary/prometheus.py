"""A small Prometheus HTTP API client (``/api/v1/query``), with an optional bearer token.

Works against a local Prometheus and against Azure Monitor managed Prometheus, whose query
endpoint speaks the same API and wants an Entra ID token (see :mod:`modelserver.canary.azure`).
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

TIMEOUT = 10.0
"""Seconds one query may take."""


class PrometheusError(RuntimeError):
    """Prometheus could not be reached or refused a query; the message names the URL and the cause."""


class PrometheusClient:
    def __init__(self, url: str, token: Callable[[], str] | None = None, timeout: float = TIMEOUT):
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"Prometheus URL must be http(s)://host[:port][/path], got {url!r}")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """Run an instant query; return ``(labels, value)`` per series (scalars as one row)."""
        request = urllib.request.Request(
            f"{self.url}/api/v1/query", data=urllib.parse.urlencode({"query": expr}).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        )
        if self.token is not None:
            request.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise PrometheusError(f"{self.url} refused the query ({exc.code}): {detail}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {reason}") from None
        except json.JSONDecodeError:
            raise PrometheusError(f"{self.url} answered something that is not JSON") from None
        if body.get("status") != "success":
            raise PrometheusError(f"{self.url}: query failed: {body.get('error', body)}")
        data = body.get("data", {})
        if data.get("resultType") == "scalar":
            return [({}, _number(data["result"][1]))]
        return [(row.get("metric", {}), _number(row["value"][1])) for row in data.get("result", [])]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=self.timeout) as response:
                return response.status == 200
        except (urllib.error.URLError, TimeoutError, OSError):
            return False


def _number(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan
