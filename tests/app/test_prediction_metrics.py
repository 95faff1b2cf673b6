"""Predicted labels per model version in /metrics: what the canary analysis compares."""

from __future__ import annotations

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_digits

from modelserver.metrics import MAX_LABEL_VALUES, Metrics

DIGITS = load_digits()


def _predictions(text: str) -> dict[tuple[str, str, str, str], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        if family.name == "modelship_predictions":
            for sample in family.samples:
                if sample.name == "modelship_predictions_total":
                    lab = sample.labels
                    found[(lab["model"], lab["version"], lab["output"], lab["label"])] = sample.value
    return found


def test_the_server_counts_each_predicted_label_per_model_version(client: httpx.Client) -> None:
    before = _predictions(client.get("/metrics").text)
    rows = DIGITS.data[:20]
    tensor = {"name": "input", "shape": [20, 64], "datatype": "FP32", "data": rows.ravel().tolist()}
    body = {"inputs": [tensor]}
    response = client.post("/v2/models/digits/infer", json=body)
    assert response.status_code == 200, response.text
    labels = next(o for o in response.json()["outputs"] if o["name"] == "label")["data"]
    after = _predictions(client.get("/metrics").text)
    delta = {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}
    expected = {("digits", "1.0.0", "label", str(v)): float(labels.count(v)) for v in set(labels)}
    # Only the label output is counted; probabilities are not labels.
    assert delta == expected


def test_label_values_are_bounded_so_a_model_cannot_explode_the_series() -> None:
    metrics = Metrics()
    many = np.arange(MAX_LABEL_VALUES + 50, dtype=np.int64)
    metrics.count_predictions("m", "1", {"label": many, "scores": np.zeros((many.size, 3), np.float32)})
    found = _predictions(metrics.exposition().decode())
    assert len(found) == MAX_LABEL_VALUES + 1
    assert found[("m", "1", "label", "other")] == 50
    assert sum(found.values()) == many.size
