"""The canary analysis against a real Prometheus scraping real model servers.

Three server processes play stable, an identical canary and a drifting canary (a model that answers
0 for every image). Each gets the same requests: one fixed batch of 50 digits images, sent
150 times, so an identical model's label counts are exactly proportional to the stable's (PSI 0)
and the drifting one's are all 0s. The verdicts therefore cannot flip by chance, and the latency
rule is given a 60 s margin here so that a slow machine never decides anything (that rule is
tested on fixed figures in tests/app/canary/test_analysis.py).

Nothing waits for time: the fixture polls Prometheus until every side's counters hold exactly the
requests it was sent (bounded), and every query spans an hour, so each verdict is about the whole,
known sample however slow the machine or late the scrape.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sklearn.datasets import load_digits

from delivery.prometheus import PROMETHEUS_BIN, LocalPrometheus
from delivery.services import free_port
from modelserver.canary.analysis import Status, analyze
from modelship_contract.canary import DEFAULT
from tests.app.modelserver_process import RunningServer, start_server, stop_server
from training.drifted import write_constant_model
from training.train_digits import train

BATCH = load_digits().data[:50]
REQUESTS = 150
WINDOW = 3600
"""Query window (s): far longer than the module runs, so no request ever falls out of it."""
DEFINITION = dataclasses.replace(DEFAULT, p99_margin_seconds=60.0)


def wait_counted(prometheus: LocalPrometheus, tag: str, requests: int, timeout: float = 120.0) -> None:
    """Poll until Prometheus holds exactly ``requests`` inference requests of ``tag`` (bounded)."""
    query = DEFINITION.query("requests", tag, WINDOW)
    deadline = time.monotonic() + timeout
    while (rows := prometheus.client().query(query)) != [({}, float(requests))]:
        assert time.monotonic() < deadline, f"Prometheus shows {rows} requests of {tag}, not {requests}"
        time.sleep(0.2)


def send(server: RunningServer, requests: int) -> None:
    body = {"inputs": [{"name": "input", "shape": list(BATCH.shape), "datatype": "FP32",
                        "data": BATCH.ravel().tolist()}]}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(requests):
            response = client.post("/v2/models/digits/infer", json=body)
            assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def scraped(tmp_path_factory) -> Iterator[LocalPrometheus]:
    if not PROMETHEUS_BIN.exists():
        pytest.fail(f"{PROMETHEUS_BIN} is missing: scripts/bootstrap.sh installs Debian's prometheus")
    tmp = tmp_path_factory.mktemp("canary")
    train(tmp / "good", version="1.0.0", source_revision="test")
    write_constant_model(tmp / "drifted", version="2.0.0-drifted")
    servers: dict[str, RunningServer] = {}
    prometheus = LocalPrometheus(tmp / "state", free_port())
    try:
        for tag, model in (("stable", "good"), ("same", "good"), ("drifted", "drifted"), ("quiet", "good")):
            servers[tag] = start_server(tmp / model, tmp / f"{tag}.log")
        prometheus.ensure()
        prometheus.set_targets((int(s.url.rsplit(":", 1)[1]), tag) for tag, s in servers.items())
        for tag in servers:
            prometheus.wait_scraped(tag)
        sent = {"stable": REQUESTS, "same": REQUESTS, "drifted": REQUESTS, "quiet": 5}
        for tag, requests in sent.items():
            send(servers[tag], requests)
        for tag, requests in sent.items():
            wait_counted(prometheus, tag, requests)
        yield prometheus
    finally:
        prometheus.stop()
        for server in servers.values():
            stop_server(server)


def verdict(prometheus: LocalPrometheus, canary: str, wait: float):
    return analyze(prometheus.client(), DEFINITION, canary, "stable", WINDOW, wait_seconds=wait,
                   poll_seconds=0.5)


def test_an_identical_canary_passes(scraped: LocalPrometheus) -> None:
    result = verdict(scraped, "same", wait=0)  # every request is already counted: no wait needed
    assert result.status is Status.PASS, result.to_dict()
    assert result.canary.requests == REQUESTS and result.canary.predictions == REQUESTS * len(BATCH)
    assert next(c.value for c in result.checks if c.name == "prediction_drift") == pytest.approx(0, abs=1e-9)


def test_a_drifting_canary_fails_on_prediction_drift(scraped: LocalPrometheus) -> None:
    result = verdict(scraped, "drifted", wait=0)
    assert result.status is Status.FAIL, result.to_dict()
    checks = {c.name: c for c in result.checks}
    assert checks["prediction_drift"].status is Status.FAIL
    assert checks["error_rate"].status is Status.PASS  # it answers 200 every time: only drift shows it
    assert set(result.canary.labels) == {"0"}
    assert result.canary.predictions == result.stable.predictions == REQUESTS * len(BATCH)


def test_a_canary_with_too_little_traffic_is_inconclusive(scraped: LocalPrometheus) -> None:
    # The fixture waited until Prometheus held all 5 of its requests: the verdict is about those.
    result = verdict(scraped, "quiet", wait=0)
    assert result.status is Status.INCONCLUSIVE, result.to_dict()
    assert result.canary.requests == 5


def test_a_second_prometheus_on_a_taken_port_is_refused(scraped: LocalPrometheus, tmp_path: Path) -> None:
    from delivery.services import ServiceError

    with pytest.raises(ServiceError, match=f"port {scraped.port} is taken"):
        LocalPrometheus(tmp_path, scraped.port).ensure()
