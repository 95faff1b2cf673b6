"""The local canary end to end: HAProxy weights, a real Prometheus, real containers, real clients.

A retrained model (same data, same seed: the same answers) is canaried 10 % -> 50 % and promoted;
a model that passes the smoke test but answers 0 for every image is rolled back on prediction
drift, and the previous version keeps serving. Throughout, the release's own clients send the same
batch through the front door and count every request that did not get a 200: none may fail.

Nothing here depends on chance or on the machine's speed: each request carries the same 50 images
(an identical model's label counts are exactly proportional to the stable's, the drifting one's
are all 0s), a step ends only once both sides have the minimum sample (waiting up to 4 minutes for
it), and the latency rule gets a 60 s margin (it is tested on fixed figures elsewhere).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from delivery.cli import up
from delivery.rollout import read_record
from delivery.settings import DeliveryError, LocalSettings
from delivery.smoke import run_smoke
from tests.delivery.test_local_e2e import ensure_deployed, publish
from training.drifted import write_constant_model

pytestmark = [pytest.mark.docker, pytest.mark.azurite]

FAST = {
    "steps": [{"weight": 10, "hold_seconds": 2}, {"weight": 50, "hold_seconds": 2}],
    "max_wait_seconds": 240,
    "p99_margin_seconds": 60.0,
}


@pytest.fixture()
def canary_on(monkeypatch, tmp_path: Path) -> None:
    definition = tmp_path / "analysis.json"
    definition.write_text(json.dumps(FAST))
    monkeypatch.setenv("MODELSHIP_CANARY", "on")
    monkeypatch.setenv("MODELSHIP_CANARY_DEFINITION", str(definition))


def served_version(settings: LocalSettings) -> str:
    return run_smoke(f"http://127.0.0.1:{settings.port}", "digits", timeout=30, interval=0.5).version


def canary_record(settings: LocalSettings) -> dict:
    return json.loads((settings.state_dir / f"canary-{settings.instance}.json").read_text())


def test_an_unchanged_model_is_canaried_and_promoted(deployment, tmp_path: Path, canary_on) -> None:
    settings, store = deployment
    ensure_deployed(settings, store, tmp_path, "1.0.0")
    publish(store, tmp_path, "1.1.0")
    record = up(settings, echo=False, store=store)
    assert record["model_version"] == "1.1.0" and served_version(settings) == "1.1.0"
    canary = canary_record(settings)
    assert canary["promoted"] is True, canary
    assert [s["weight"] for s in canary["steps"]] == [10, 50]
    assert all(s["status"] == "pass" for s in canary["steps"])
    assert all(s["canary"]["predictions"] >= 500 for s in canary["steps"])
    assert canary["clients"]["failed"] == 0 and canary["clients"]["ok"] > 0, canary["clients"]


def test_a_drifting_model_is_rolled_back_and_the_stable_keeps_serving(
    deployment, tmp_path: Path, canary_on
) -> None:
    settings, store = deployment
    ensure_deployed(settings, store, tmp_path, "1.1.0")
    before = served_version(settings)
    write_constant_model(tmp_path / "drifted", version="2.0.0-drifted")
    store.publish(tmp_path / "drifted")
    # The only rule that can fail here: errors are 0 and latency has a 60 s margin. The other two may
    # still lack evidence when drift is decided (a failure needs no more), so they are not matched.
    with pytest.raises(DeliveryError, match=r"canary rolled back at 10%: prediction_drift fail \("):
        up(settings, echo=False, store=store)
    assert served_version(settings) == before
    assert read_record(settings)["model_version"] == before
    canary = canary_record(settings)
    assert canary["promoted"] is False
    drift = next(c for c in canary["steps"][-1]["checks"] if c["name"] == "prediction_drift")
    assert drift["status"] == "fail" and drift["value"] > 1
    assert canary["steps"][-1]["canary"]["labels"].keys() == {"0"}
    assert canary["clients"]["failed"] == 0 and canary["clients"]["ok"] > 0, canary["clients"]
