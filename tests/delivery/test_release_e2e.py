"""Safe model release end to end, locally, with real parts only (issue 13's "done when").

Azurite holds the models, the golden set, the evaluation reports and the alias records; the
evaluation runs ONNX Runtime on every golden row; `make watch`'s :class:`delivery.watch.Watcher`
notices each move of ``digits@production`` and runs the real release (build, test, push, then the
canary through HAProxy's weights, analysed in a real Prometheus). Meanwhile a client of our own
sends requests through the front door and counts every answer that is not a 200.

1. ``1.0.0`` (the demo model) is evaluated alone, promoted to production and released.
2. ``1.1.0``, trained on 10 % of the rows, is refused at the gate: the alias does not move and
   nothing is released.
3. ``1.2.0`` (3 nearest neighbours) beats production on the golden set, is promoted, canaried
   10 % -> 50 % and rolled out to 100 %.
4. ``1.3.0`` learnt the golden set by heart (:func:`training.drifted.write_golden_memoriser`): 100 %
   at the gate, so it is promoted, but on live traffic it answers 0 for nearly everything; the canary
   sees the drift at 10 % and rolls it back, 1.2.0 keeps serving, no client request fails. The
   release moves ``production`` back to 1.2.0 itself (a ``rollback`` move by the canary, with the
   verdict's figures) and marks 1.3.0 rejected: the watcher finds 1.2.0 already running, and
   promoting 1.3.0 again is refused without ``--force``.

Every verdict holds by construction, not by chance or speed: the models are deterministic, the gate
scores all 450 golden rows, and every canary request carries the same 50 images, so each side's
label counts are exact multiples of one batch's; the test checks first, offline, that the drift
statistic between those batches is far below (1.2.0 vs 1.0.0) or far above (1.3.0 vs 1.2.0) the
threshold. A step is judged only once both sides reached the minimum sample (polled, up to 4 min);
the latency rule gets a 60 s margin (it is tested on fixed figures in tests/app/canary).

The phases' durations are written to ``<state_dir>/release-e2e-timings.json`` and printed (``-s``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from delivery.canary import Traffic, traffic_rows
from delivery.cli import up
from delivery.settings import DeliveryError, LocalSettings
from delivery.watch import Watcher, served_version
from modelserver.canary.analysis import psi
from modelserver.predictor import Predictor
from modelship_contract.canary import AnalysisDefinition
from modelstore.aliases import Aliases
from modelstore.cli import main as models_cli
from training.drifted import write_golden_memoriser
from training.train_digits import train, write_golden

pytestmark = [pytest.mark.docker, pytest.mark.azurite]

ANALYSIS = {
    "steps": [{"weight": 10, "hold_seconds": 1}, {"weight": 50, "hold_seconds": 1}],
    "min_requests": 20,
    "min_predictions": 500,
    "max_wait_seconds": 240,
    "p99_margin_seconds": 60.0,
}
"""Short holds and a small minimum sample: enough, because every request carries the same batch."""
DEFINITION = AnalysisDefinition.from_dict(ANALYSIS)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """The golden set and four model directories, with the drift each shows on the canary's batch."""
    root = tmp_path_factory.mktemp("release")
    dirs = {"golden": root / "golden"}
    write_golden(dirs["golden"])
    trained = (("1.0.0", {}), ("1.1.0", {"train_fraction": 0.1}), ("1.2.0", {"estimator": "knn"}))
    for version, kwargs in trained:
        dirs[version] = root / version
        train(dirs[version], "digits", version, source_revision="test", **kwargs)
    dirs["1.3.0"] = root / "1.3.0"
    write_golden_memoriser(dirs["1.3.0"], version="1.3.0")
    return dirs


def _utc(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def batch_labels(model_dir: Path) -> dict[str, float]:
    """Label counts of one canary request (the fixed batch) as the model answers it."""
    predictor = Predictor(model_dir)
    predictor.load()
    labels = predictor.predict({"input": traffic_rows().astype(np.float32)})["label"]
    return {str(k): float(v) for k, v in Counter(labels.tolist()).items()}


def test_the_canary_verdicts_hold_by_construction(models) -> None:
    # Any number of identical batches has these exact label shares, so the PSI the analysis computes
    # is this one, whichever requests went where; the margins are an order of magnitude.
    assert psi(batch_labels(models["1.0.0"]), batch_labels(models["1.2.0"])) < DEFINITION.drift_threshold / 10
    assert psi(batch_labels(models["1.2.0"]), batch_labels(models["1.3.0"])) > DEFINITION.drift_threshold * 10


@dataclasses.dataclass
class Chain:
    settings: LocalSettings
    store: object
    watcher: Watcher
    timings: dict
    failures: list[str]

    def cli(self, *argv: str) -> int:
        return models_cli(list(argv))

    def timed(self, phase: str, fn, *args):
        started = time.monotonic()
        try:
            return fn(*args)
        finally:
            self.timings[phase] = round(time.monotonic() - started, 1)

    def canary(self) -> dict:
        return json.loads((self.settings.state_dir / f"canary-{self.settings.instance}.json").read_text())

    def production(self) -> str:
        doc, _ = Aliases(self.store).read("digits", "production")
        return doc["current"]["to"]


@pytest.fixture(scope="module")
def chain(deployment, models, azurite, tmp_path_factory) -> Chain:
    settings, store = deployment
    with pytest.MonkeyPatch.context() as mp:
        analysis = tmp_path_factory.mktemp("analysis") / "analysis.json"
        analysis.write_text(json.dumps(ANALYSIS))
        mp.setenv("MODELSHIP_CANARY", "on")
        mp.setenv("MODELSHIP_CANARY_DEFINITION", str(analysis))
        # The store CLI on the deployment's own store (as `make models` does on the local Azurite).
        mp.delenv("MODELSHIP_STORE_URL", raising=False)
        mp.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
        mp.setenv("MODELSHIP_STORE_CONTAINER", store.container_name)
        mp.setenv("MODELSHIP_CACHE_DIR", str(tmp_path_factory.mktemp("eval-cache")))
        failures: list[str] = []

        def release(ref: str) -> bool:
            # What `make watch` runs (`make up --model digits@VERSION`), in process on the test's store.
            try:
                # --from-alias production, as the watcher passes it.
                up(dataclasses.replace(settings, model_version=ref.split("@", 1)[1],
                                       release_alias="production"), echo=False, store=store)
                return True
            except DeliveryError as exc:
                failures.append(str(exc))
                return False

        watcher = Watcher(store, "digits", "production", release, lambda: served_version(settings),
                          settings.state_dir / "watch-digits-production.json", interval=1.0)
        yield Chain(settings, store, watcher, {}, failures)


def test_release_chain_gate_canary_rollout_and_rollback(chain: Chain, models) -> None:
    c, settings = chain, chain.settings
    assert c.cli("dataset", "publish", str(models["golden"])) == 0
    for version in ("1.0.0", "1.1.0", "1.2.0", "1.3.0"):
        assert c.cli("publish", str(models[version])) == 0

    # 1. The first production model: judged alone on the golden set, promoted, released.
    assert c.timed("evaluate 1.0.0 alone", c.cli, "evaluate", "digits@1.0.0",
                   "--dataset", "digits-golden@1") == 0
    assert c.cli("promote", "digits@1.0.0", "--alias", "production", "--reason", "first model") == 0
    assert c.timed("release 1.0.0 (first: no canary)", c.watcher.step) == "released", c.failures
    assert served_version(settings) == "1.0.0"

    # 2. A worse model is refused at the gate: no move, so no release.
    assert c.timed("evaluate 1.1.0 (worse)", c.cli, "evaluate", "digits@1.1.0", "--against", "production",
                   "--dataset", "digits-golden@1") == 7
    assert c.cli("promote", "digits@1.1.0", "--alias", "production", "--reason", "try") == 7
    assert c.production() == "1.0.0" and c.watcher.step() is None

    # 3. A better model: evaluated, promoted, canaried 10 % -> 50 %, rolled out, no request failed.
    assert c.timed("evaluate 1.2.0 (better)", c.cli, "evaluate", "digits@1.2.0", "--against", "production",
                   "--dataset", "digits-golden@1") == 0
    assert c.timed("promote 1.2.0", c.cli, "promote", "digits@1.2.0", "--alias", "production",
                   "--reason", "knn beats logreg on digits-golden@1") == 0
    with Traffic(f"http://127.0.0.1:{settings.port}", "digits", clients=1) as client:
        assert c.timed("release 1.2.0 (canary, promoted)", c.watcher.step) == "released", c.failures
    assert client.failed == 0 and client.ok > 0, client.summary()
    assert served_version(settings) == "1.2.0"
    canary = c.canary()
    assert canary["promoted"] is True and canary["clients"]["failed"] == 0, canary
    assert [(s["weight"], s["status"]) for s in canary["steps"]] == [(10, "pass"), (50, "pass")]
    for number, s in enumerate(canary["steps"], 1):
        c.timings[f"  canary step {number} ({s['weight']} %)"] = s["seconds"]
    c.timings["  build, test, push and switch"] = round(
        c.timings["release 1.2.0 (canary, promoted)"] - canary["seconds"], 1)

    # 4. Passes the gate (it knows the golden rows by heart), drifts under live traffic: rolled back.
    assert c.timed("evaluate 1.3.0 (memorised the golden set)", c.cli, "evaluate", "digits@1.3.0",
                   "--against", "production", "--dataset", "digits-golden@1") == 0
    assert c.cli("promote", "digits@1.3.0", "--alias", "production", "--reason", "100% on golden") == 0
    with Traffic(f"http://127.0.0.1:{settings.port}", "digits", clients=1) as client:
        assert c.timed("release 1.3.0 (canary, rolled back)", c.watcher.step) == "failed"
    assert client.failed == 0 and client.ok > 0, client.summary()
    assert served_version(settings) == "1.2.0"
    [failure] = c.failures
    assert "canary rolled back at 10%: prediction_drift fail (" in failure, failure
    canary = c.canary()
    assert canary["promoted"] is False and canary["clients"]["failed"] == 0, canary
    drift = next(x for x in canary["steps"][-1]["checks"] if x["name"] == "prediction_drift")
    assert drift["status"] == "fail" and drift["value"] > DEFINITION.drift_threshold * 10
    c.timings["  canary step 1 (10 %) to rollback"] = canary["steps"][-1]["seconds"]

    # The release moved the alias back to the version that kept serving, with the canary's record.
    moves = Aliases(c.store).history("digits", "production")
    assert [m["to"] for m in moves] == ["1.0.0", "1.2.0", "1.3.0", "1.2.0"]
    back = moves[-1]
    assert (back["kind"], back["from"], back["forced"]) == ("rollback", "1.3.0", False)
    assert back["who"].startswith("canary:local via ")
    assert "canary rolled back at 10%: prediction_drift fail" in back["why"]
    assert back["report"]["verdict"] == "fail" and back["report"]["record"].endswith(
        f"canary-{settings.instance}.json")
    assert next(x for x in back["report"]["checks"] if x["name"] == "prediction_drift")["value"] == \
        drift["value"]
    assert "digits@production: 1.3.0 -> 1.2.0 (move 4, rollback by canary:local" in failure, failure
    assert Aliases(c.store).get("digits", "production").rejected == ("1.3.0",)
    c.timings["  promotion of 1.3.0 to the alias back on 1.2.0 (record times)"] = round(
        (_utc(back["when"]) - _utc(moves[-2]["when"])), 1)
    assert c.watcher.step() == "already running", "the rollback move was taken for a new release"
    assert c.watcher.step() is None, "a failed release was retried"
    # The rejected version is not promoted (nor released) again without --force.
    assert c.cli("promote", "digits@1.3.0", "--alias", "production", "--reason", "again") == 7
    assert c.production() == "1.2.0" and c.watcher.step() is None

    (settings.state_dir / "release-e2e-timings.json").write_text(json.dumps(c.timings, indent=2) + "\n")
    print("\nrelease chain phases (s):\n" + "\n".join(f"  {k}: {v}" for k, v in c.timings.items()))
