"""Score a candidate and the model it would replace on the same golden rows, in one run.

``modelship-models evaluate digits@1.2.0 --against production --dataset digits-golden@1``:

1. resolve both models and the data set, each pinned by sha256 (fetches are verified);
2. run both ONNX files with ONNX Runtime on every row of the data set (no sampling: the verdict is a
   pure function of the three sha256s and the library versions);
3. compute the metrics and per-class precision/recall/F1, decide the verdict, and store the report
   beside the candidate (:mod:`modelstore.reports`), where ``promote`` looks for it.

The bar (task, metric, tolerance) is the one the *current* model's manifest declares, when it
declares one: a candidate cannot lower the bar it is judged by. Otherwise the candidate's own.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from modelship_contract.manifest import Datatype, EvaluationSpec, Metric, ModelManifest
from modelstore.aliases import signed_in_identity
from modelstore.datasets import Dataset, Datasets
from modelstore.errors import InvalidInput
from modelstore.reports import FAIL, PASS, REPORT_KIND, REPORT_SCHEMA, store_report
from modelstore.store import ModelStore, _now, parse_ref


@dataclasses.dataclass(frozen=True)
class Evaluation:
    report: dict[str, Any]
    stored: dict[str, Any]
    """The reference a promotion records (blob, sha256, verdict)."""

    @property
    def passed(self) -> bool:
        return self.report["verdict"] == PASS


def evaluate(store: ModelStore, candidate_ref: str, dataset_ref: str, against: str | None = None,
             cache_dir: Path | None = None) -> Evaluation:
    candidate, _ = store.resolve(candidate_ref)
    baseline = None
    if against:
        against_ref = against if "@" in against else f"{candidate.name}@{against}"
        if parse_ref(against_ref)[0] != candidate.name:
            raise InvalidInput(f"--against {against!r} is another model; compare {candidate.name} versions")
        baseline, _ = store.resolve(against_ref)
        if baseline.sha256 == candidate.sha256:
            raise InvalidInput(f"{against_ref} is {baseline.ref}, the candidate itself: nothing to compare")
    spec = _bar(candidate, baseline)
    dataset = Datasets(store).load(dataset_ref)
    if spec.dataset and dataset.manifest.name != spec.dataset:
        raise InvalidInput(f"{(baseline or candidate).ref} is judged on data set '{spec.dataset}', "
                           f"not '{dataset.manifest.name}': pass --dataset {spec.dataset}@VERSION")
    if dataset.manifest.task != spec.task:
        raise InvalidInput(f"data set {dataset.manifest.ref} is for {dataset.manifest.task.value}, "
                           f"the model for {spec.task.value}")
    with tempfile.TemporaryDirectory(prefix="modelship-evaluate-") as tmp:
        scores = {}
        for role, manifest in (("candidate", candidate), ("against", baseline)):
            if manifest is None:
                continue
            fetched = store.fetch(manifest.ref, Path(tmp) / role, cache_dir=cache_dir)
            predicted = predict(fetched.dest, manifest, dataset)  # type: ignore[arg-type]
            scores[role] = score(dataset.labels, predicted, dataset.manifest.classes)
    report = _report(store, candidate, baseline, against, dataset, spec, scores)
    return Evaluation(report, store_report(store, candidate, report))


def _bar(candidate: ModelManifest, baseline: ModelManifest | None) -> EvaluationSpec:
    for manifest in (baseline, candidate):
        if manifest is not None and manifest.evaluation is not None:
            return manifest.evaluation
    raise InvalidInput(
        f"{candidate.ref} declares no evaluation in its manifest (task, metric, tolerance): retrain with "
        "training/train_digits.py, which writes one, or add \"evaluation\" to manifest.json"
    )


def predict(model_dir: Path, manifest: ModelManifest, dataset: Dataset) -> list[int]:
    """Labels the model predicts for every row, with ONNX Runtime on the CPU, in one batch."""
    import numpy as np
    import onnxruntime

    inp = manifest.inputs[0]
    width = inp.shape[-1] if inp.shape else -1
    if inp.datatype is not Datatype.FP32 or (width != -1 and width != dataset.manifest.features):
        raise InvalidInput(f"{manifest.ref} takes {inp.datatype.value}{list(inp.shape)}; data set "
                           f"{dataset.manifest.ref} has {dataset.manifest.features} features per row")
    label = next((o for o in manifest.outputs if o.datatype is Datatype.INT64 and len(o.shape) == 1), None)
    if label is None:
        raise InvalidInput(f"{manifest.ref} has no INT64 [-1] label output to score a classification")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # same numbers on any machine, and no fight for the CPUs
    session = onnxruntime.InferenceSession(str(model_dir / manifest.model_file), options,
                                           providers=["CPUExecutionProvider"])
    [labels] = session.run([label.name], {inp.name: np.asarray(dataset.features, dtype=np.float32)})
    return [int(v) for v in labels]


def score(truth: list[int], predicted: list[int], classes: tuple[int, ...]) -> dict[str, Any]:
    """Accuracy, macro F1 and per-class precision/recall/F1/support (from integer counts)."""
    per_class = {}
    for c in classes:
        tp = sum(1 for t, p in zip(truth, predicted, strict=True) if t == c and p == c)
        predicted_c = sum(1 for p in predicted if p == c)
        support = sum(1 for t in truth if t == c)
        precision = tp / predicted_c if predicted_c else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[str(c)] = {"precision": round(precision, 6), "recall": round(recall, 6),
                             "f1": round(f1, 6), "support": support}
    correct = sum(1 for t, p in zip(truth, predicted, strict=True) if t == p)
    macro_f1 = sum(v["f1"] for v in per_class.values()) / len(per_class)
    return {"metrics": {Metric.ACCURACY.value: round(correct / len(truth), 6),
                        Metric.MACRO_F1.value: round(macro_f1, 6), "correct": correct, "rows": len(truth)},
            "per_class": per_class}


def _report(store: ModelStore, candidate: ModelManifest, baseline: ModelManifest | None,
            requested: str | None, dataset: Dataset, spec: EvaluationSpec,
            scores: dict[str, Any]) -> dict[str, Any]:
    import onnxruntime

    metric = spec.metric.value
    cand = scores["candidate"]["metrics"][metric]
    if baseline is None:
        verdict = PASS
        reason = f"{metric} {cand:.4f} on {dataset.manifest.ref}; no current model to compare with"
        delta = None
    else:
        base = scores["against"]["metrics"][metric]
        delta = round(cand - base, 6)
        # Compare in whole millionths (the rounding above) so the verdict never hangs on float noise.
        verdict = PASS if round(delta * 1e6) >= -round(spec.tolerance * 1e6) else FAIL
        reason = (f"{metric} {cand:.4f} vs {base:.4f} of {baseline.ref}: {delta * 100:+.2f} points, "
                  f"{'within' if verdict == PASS else 'beyond'} the tolerance of "
                  f"{spec.tolerance * 100:.2f} points")
    return {
        "schema": REPORT_SCHEMA,
        "kind": REPORT_KIND,
        "verdict": verdict,
        "reason": reason,
        "candidate": {"ref": candidate.ref, "sha256": candidate.sha256},
        "against": None if baseline is None else {
            "ref": baseline.ref, "requested": requested, "sha256": baseline.sha256},
        "dataset": {"ref": dataset.manifest.ref, "sha256": dataset.manifest.sha256,
                    "rows": dataset.manifest.rows},
        "bar": {**spec.to_dict(), "declared_by": (baseline if baseline is not None and baseline.evaluation
                                                  else candidate).ref},
        "delta": delta,
        "metrics": {role: s["metrics"] for role, s in scores.items()},
        "per_class": {role: s["per_class"] for role, s in scores.items()},
        "runtime": f"onnxruntime {onnxruntime.__version__}",
        "evaluated_at": _now(),
        "evaluated_by": signed_in_identity(store),
    }
