"""The deliberately drifting model: the demo's signature, a valid manifest, one answer for everything."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from modelserver.predictor import Predictor
from modelship_contract.manifest import read_manifest
from training.drifted import write_constant_model
from training.train_digits import INPUTS, OUTPUTS


def test_it_answers_the_same_label_for_every_image_with_the_demo_signature(tmp_path) -> None:
    manifest = write_constant_model(tmp_path, version="2.0.0-drifted", label=0)
    assert read_manifest(tmp_path) == manifest
    assert manifest.inputs == INPUTS and manifest.outputs == OUTPUTS
    predictor = Predictor(tmp_path)
    predictor.load()
    out = predictor.predict({"input": load_digits().data.astype(np.float32)})
    assert set(out["label"].tolist()) == {0}  # so it passes the smoke test's known answer (a 0)
    assert out["probabilities"].shape == (1797, 10)


def test_the_label_must_be_a_digit(tmp_path) -> None:
    with pytest.raises(ValueError, match="label must be 0-9"):
        write_constant_model(tmp_path, label=10)


def test_the_golden_memoriser_is_perfect_on_the_golden_set_and_constant_elsewhere(tmp_path) -> None:
    from modelship_contract.manifest import Metric
    from training.drifted import write_golden_memoriser
    from training.train_digits import golden_split

    manifest = write_golden_memoriser(tmp_path, version="1.3.0", fallback=0)
    assert read_manifest(tmp_path) == manifest and manifest.outputs == OUTPUTS
    assert manifest.evaluation is not None and manifest.evaluation.metric is Metric.ACCURACY
    predictor = Predictor(tmp_path)
    predictor.load()
    x_train, x_golden, _, y_golden = golden_split()
    golden = predictor.predict({"input": x_golden.astype(np.float32)})
    assert (golden["label"] == y_golden).all()  # 100 % at the gate
    assert (golden["probabilities"].argmax(axis=1) == golden["label"]).all()
    unseen = {tuple(row) for row in x_train.tolist()} - {tuple(row) for row in x_golden.tolist()}
    seen_nowhere = np.array(sorted(unseen), np.float32)
    assert set(predictor.predict({"input": seen_nowhere})["label"].tolist()) == {0}


def test_the_fallback_must_be_a_digit(tmp_path) -> None:
    from training.drifted import write_golden_memoriser

    with pytest.raises(ValueError, match="fallback must be 0-9"):
        write_golden_memoriser(tmp_path, fallback=10)
