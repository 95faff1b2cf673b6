"""The model side of the local flow (delivery/model.py).

`make publish` and the first `make up` also publish the demo's golden data set, once, on a real
Azurite; store errors become messages that say what was not touched and what to run instead (a fake
store stands in there)."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from delivery.model import ensure_demo_model, ensure_golden_set, fetch_model
from delivery.settings import DeliveryError
from modelship_contract.manifest import load_model_dir
from modelstore.datasets import Datasets
from modelstore.errors import AccessDenied, NotFound
from modelstore.store import ModelStore
from training.train_digits import GOLDEN_NAME, train, write_golden

pytestmark = pytest.mark.azurite


@pytest.fixture
def store(azurite) -> ModelStore:
    return ModelStore.from_connection_string(azurite.connection_string, f"g-{uuid.uuid4().hex[:16]}",
                                             progress=False)


def test_the_first_up_publishes_the_demo_model_and_its_golden_set(store, tmp_path: Path) -> None:
    ensure_demo_model(store, "digits")
    [golden] = Datasets(store).list()
    expected = write_golden(tmp_path / "golden")
    assert golden.ref == f"{GOLDEN_NAME}@1" and golden.sha256 == expected.sha256
    assert store.resolve("digits@latest")[0].evaluation.dataset == GOLDEN_NAME
    ensure_demo_model(store, "digits")  # again: nothing new, no error (data sets are immutable)
    assert [m.ref for m in Datasets(store).list()] == [golden.ref]


def test_publishing_a_model_judged_on_it_adds_the_golden_set_once(store, tmp_path: Path) -> None:
    manifest = train(tmp_path / "m", "digits", "1.0.0", source_revision="test")
    store.publish(tmp_path / "m")
    no_gate = dataclasses.replace(manifest, evaluation=None)
    ensure_golden_set(store, no_gate)
    assert Datasets(store).list() == [], "published a golden set for a model that declares no evaluation"
    ensure_golden_set(store, load_model_dir(tmp_path / "m"))
    ensure_golden_set(store, manifest)
    [golden] = Datasets(store).list()
    assert golden.sha256 == write_golden(tmp_path / "golden").sha256 and golden.rows == 450


class FakeStore:
    def __init__(self, versions: list[str], fetch_error: Exception | None = None,
                 latest_error: Exception | None = None) -> None:
        self._versions, self.fetch_error, self.latest_error = versions, fetch_error, latest_error
        self.published: list[Path] = []

    def versions(self, name: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(version=v) for v in self._versions]

    def latest(self, name: str) -> SimpleNamespace:
        if self.latest_error:
            raise self.latest_error
        return SimpleNamespace(version=self._versions[-1])

    def fetch(self, ref: str, dest: Path, cache_dir: Path) -> None:
        raise self.fetch_error or AssertionError("fetch_error unset")

    def publish(self, model_dir: Path) -> None:
        self.published.append(model_dir)


def test_a_failed_fetch_says_nothing_was_touched_and_what_to_deploy_instead(tmp_path: Path) -> None:
    store = FakeStore(["1.0.0", "1.1.0"], fetch_error=NotFound("digits@2.0.0 is not published"))
    with pytest.raises(DeliveryError) as raised:
        fetch_model(store, "digits@2.0.0", tmp_path, tmp_path / "cache")
    message = str(raised.value)
    assert message.startswith("cannot fetch digits@2.0.0 from the model store: "
                              "digits@2.0.0 is not published.")
    assert "Nothing was built or pushed; the running container (if any) keeps serving." in message
    assert message.endswith("make up MODEL=digits@<version> (published: 1.0.0, 1.1.0)")


def test_latest_is_named_as_such(tmp_path: Path) -> None:
    store = FakeStore([], fetch_error=NotFound("no versions"))
    with pytest.raises(DeliveryError, match=r"^cannot fetch the latest digits .*\(published: none\)$"):
        fetch_model(store, "digits@latest", tmp_path, tmp_path / "cache")


def test_an_unreadable_store_is_an_error_and_nothing_is_published() -> None:
    denied = FakeStore([], latest_error=AccessDenied("403 from the account"))
    with pytest.raises(DeliveryError, match=r"^cannot read the model store: 403 from the account$"):
        ensure_demo_model(denied, "digits")
    assert denied.published == []


def _canary_record(stable, canary) -> dict:
    """What delivery.canary.release records for a rollback (figures as the analysis reports them)."""
    checks = [{"name": "error_rate", "status": "pass", "value": 0.0, "threshold": 0.01},
              {"name": "prediction_drift", "status": "fail", "value": 2.87, "threshold": 0.2}]
    return {
        "stable": {"port": 1, "tag": "aaa", "version": stable.version, "sha256": stable.sha256},
        "canary": {"port": 2, "tag": "bbb", "version": canary.version, "sha256": canary.sha256},
        "promoted": False, "reason": "prediction_drift fail (2.87)", "seconds": 31.7,
        "clients": {"ok": 1627, "failed": 0, "failures": []},
        "steps": [{"weight": 10, "seconds": 31.0, "status": "fail", "checks": checks,
                   "canary": {"requests": 149.0}, "stable": {"requests": 1456.0}}],
        "path": "/state/canary-x.json",
    }


def test_a_local_canary_rollback_moves_the_alias_back_with_its_figures(store, tmp_path: Path) -> None:
    from delivery.model import move_alias_back
    from modelstore.aliases import Aliases

    manifests = {}
    for v in ("1.0.0", "1.1.0"):
        manifests[v] = train(tmp_path / v, "digits", v, source_revision="test")
        store.publish(tmp_path / v)
    aliases = Aliases(store)
    aliases.move("digits", "production", "1.0.0", "first", forced=True)
    aliases.move("digits", "production", "1.1.0", "second", forced=True)
    record = _canary_record(manifests["1.0.0"], manifests["1.1.0"])
    said = move_alias_back(store, "digits", "production", record, "canary rolled back at 10%: drift")
    assert said.startswith("digits@production: 1.1.0 -> 1.0.0 (move 3, rollback by canary:local via ")
    last = aliases.history("digits", "production")[-1]
    assert last["kind"] == "rollback" and last["why"] == "canary rolled back at 10%: drift"
    evidence = last["report"]
    assert (evidence["engine"], evidence["verdict"], evidence["step_weight"]) == ("local", "fail", 10)
    assert evidence["checks"][1]["value"] == 2.87 and evidence["record"] == "/state/canary-x.json"
    assert evidence["clients"]["failed"] == 0
    # Again (the alias names 1.0.0 now): left alone, and said so.
    assert "was left as it is: it names 1.0.0" in move_alias_back(store, "digits", "production", record, "x")
    # The serving bytes are not the version's: nothing moves, the release's error says to move it by hand.
    aliases.move("digits", "production", "1.1.0", "third", forced=True)
    record["stable"]["sha256"] = "0" * 64
    said = move_alias_back(store, "digits", "production", record, "x")
    assert said.startswith("digits@production was NOT moved back") and "move it by hand" in said
    assert aliases.get("digits", "production").version == "1.1.0"
