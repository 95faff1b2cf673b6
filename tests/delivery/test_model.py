"""`make publish` and the first `make up` also publish the demo's golden data set, once, on a real Azurite."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest

from delivery.model import ensure_demo_model, ensure_golden_set
from modelship_contract.manifest import load_model_dir
from modelstore.datasets import Datasets
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
