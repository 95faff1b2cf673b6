"""Train the demo model: a digits classifier exported to ONNX, written as a model directory.

The data set is ``sklearn.datasets.load_digits`` (8x8 grey images, 64 features with values
0..16, ten classes), which ships inside scikit-learn: nothing is downloaded. Training is
deterministic (fixed split and ``random_state``), so the same library versions give the same
ONNX bytes and the same sha256.

The ONNX graph has no ZipMap: input ``input`` FP32 [-1, 64], outputs ``label`` INT64 [-1] and
``probabilities`` FP32 [-1, 10]. The manifest beside it is written with
``modelship_contract.manifest.ModelManifest``, the single definition of a model directory.

    python -m training.train_digits --out app/model [--name digits] [--version 1.0.0]
        [--source-revision REV] [--sklearn-out DIR] [--estimator logreg|knn] [--train-fraction F]
        [--golden-out DIR]

``--golden-out`` writes the held-out rows as the golden data set ``digits-golden@1`` (see
``modelstore.datasets``); no model this script trains ever sees them.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path

from modelship_contract.manifest import (
    MANIFEST_FILE,
    Datatype,
    EvaluationSpec,
    Metric,
    ModelManifest,
    Task,
    TensorSpec,
    git_revision,
    sha256_file,
    validate_name,
    validate_version,
)

MODEL_FILE = "model.onnx"
GOLDEN_NAME = "digits-golden"
GOLDEN_VERSION = "1"
ESTIMATORS = ("logreg", "knn")
EVALUATION = EvaluationSpec(task=Task.CLASSIFICATION, metric=Metric.ACCURACY, tolerance=0.005,
                            dataset=GOLDEN_NAME)
"""The gate the demo model declares: accuracy on digits-golden, at most 0.5 points worse."""
SKLEARN_FILE = "model.joblib"
RANDOM_STATE = 0
N_FEATURES = 64
N_CLASSES = 10
INPUTS = (TensorSpec("input", Datatype.FP32, (-1, N_FEATURES)),)
OUTPUTS = (
    TensorSpec("label", Datatype.INT64, (-1,)),
    TensorSpec("probabilities", Datatype.FP32, (-1, N_CLASSES)),
)


def golden_split():
    """The one fixed split: 75% to train on, 25% held out (the golden data set). Same rows every run."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype("float32")
    return train_test_split(
        x, digits.target, test_size=0.25, random_state=RANDOM_STATE, stratify=digits.target
    )


def _fit(estimator: str = "logreg", train_fraction: float = 1.0):
    """Fit the classifier; returns (fitted pipeline, held-out accuracy).

    ``train_fraction`` < 1 trains on a fixed stratified subset of the training rows (the deliberately
    worse model of the evaluation-gate demo); ``estimator`` ``knn`` is the better one.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_test, y_train, y_test = golden_split()
    if train_fraction < 1.0:
        x_train, _, y_train, _ = train_test_split(
            x_train, y_train, train_size=train_fraction, random_state=RANDOM_STATE, stratify=y_train
        )
    if estimator == "knn":
        classifier = KNeighborsClassifier(n_neighbors=3)
    else:
        classifier = LogisticRegression(C=0.5, max_iter=2000, random_state=RANDOM_STATE)
    model = make_pipeline(StandardScaler(), classifier)
    model.fit(x_train, y_train)
    accuracy = float(model.score(x_test, y_test))
    return model, accuracy


def write_golden(out_dir: Path | str, name: str = GOLDEN_NAME, version: str = GOLDEN_VERSION):
    """Write the held-out 25% as a golden data set directory (``modelship-models dataset publish``)."""
    from modelstore.datasets import write_dataset_dir

    _, x_test, _, y_test = golden_split()
    return write_dataset_dir(
        out_dir, name, version, [[int(v) for v in row] for row in x_test], [int(v) for v in y_test],
        source=f"sklearn load_digits, the 25% held out by train_test_split(stratify, random_state="
               f"{RANDOM_STATE}); no model trained by training/train_digits.py sees these rows",
    )


def _to_onnx(model) -> bytes:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(
        model,
        initial_types=[(INPUTS[0].name, FloatTensorType([None, N_FEATURES]))],
        options={id(model): {"zipmap": False}},
        final_types=None,
    )
    # skl2onnx names the outputs "label" and "probabilities" once ZipMap is off; check, don't assume.
    names = [o.name for o in onx.graph.output]
    if names != [o.name for o in OUTPUTS]:
        raise RuntimeError(f"unexpected ONNX outputs {names}, expected {[o.name for o in OUTPUTS]}")
    return onx.SerializeToString()


def _write_sklearn(model, out: Path, name: str, version: str) -> None:
    """The same fitted model as a joblib file plus an MLServer ``model-settings.json`` (benchmarks)."""
    import joblib

    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, out / SKLEARN_FILE)
    settings = {
        "name": name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": f"./{SKLEARN_FILE}", "version": version},
    }
    (out / "model-settings.json").write_text(json.dumps(settings, indent=2) + "\n")


def train(
    out_dir: Path | str,
    name: str = "digits",
    version: str = "1.0.0",
    source_revision: str | None = None,
    sklearn_out: Path | str | None = None,
    *,
    estimator: str = "logreg",
    train_fraction: float = 1.0,
) -> ModelManifest:
    """Train, convert and write ``out_dir/model.onnx`` + ``out_dir/manifest.json``; return the manifest."""
    validate_name(name, "name")
    validate_version(version, "version")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator {estimator!r} is not one of: {', '.join(ESTIMATORS)}")
    if not 0.05 <= train_fraction <= 1.0:
        raise ValueError(f"train_fraction must be from 0.05 to 1.0, got {train_fraction}")
    import onnxruntime
    import skl2onnx
    import sklearn

    model, accuracy = _fit(estimator, train_fraction)
    onnx_bytes = _to_onnx(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / MODEL_FILE
    model_path.write_bytes(onnx_bytes)
    manifest = ModelManifest(
        name=name,
        version=version,
        model_file=MODEL_FILE,
        sha256=sha256_file(model_path),
        size=model_path.stat().st_size,
        framework="onnx",
        trained_with=(
            f"scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}, "
            f"onnxruntime {onnxruntime.__version__}"
        ),
        inputs=INPUTS,
        outputs=OUTPUTS,
        created_at=_dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        source_revision=source_revision or git_revision(Path(__file__).resolve().parent) or "unknown",
        metrics={"test_accuracy": round(accuracy, 6)},
        evaluation=EVALUATION,
    )
    (out / MANIFEST_FILE).write_text(manifest.to_json())
    if sklearn_out is not None:
        _write_sklearn(model, Path(sklearn_out), name, version)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="model directory to write")
    parser.add_argument("--name", default="digits")
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--source-revision", default=None,
                        help="default: the checkout's short git sha (12 digits)")
    parser.add_argument(
        "--sklearn-out",
        type=Path,
        default=None,
        help="also write the sklearn model + MLServer model-settings.json here",
    )
    parser.add_argument("--estimator", choices=ESTIMATORS, default="logreg",
                        help="logreg (the demo model) or knn (3 nearest neighbours: better on digits)")
    parser.add_argument("--train-fraction", type=float, default=1.0, metavar="F",
                        help="train on this fixed share of the training rows (0.1: the worse model)")
    parser.add_argument("--golden-out", type=Path, default=None, metavar="DIR",
                        help=f"also write the held-out rows as the golden data set {GOLDEN_NAME}@1 here")
    args = parser.parse_args(argv)
    start = time.monotonic()
    print(f"training {args.name}@{args.version} on sklearn digits...", file=sys.stderr)
    try:
        manifest = train(args.out, args.name, args.version, args.source_revision, args.sklearn_out,
                         estimator=args.estimator, train_fraction=args.train_fraction)
        if args.golden_out is not None:
            golden = write_golden(args.golden_out)
            print(f"wrote {golden.ref} ({golden.rows} rows, sha256 {golden.sha256[:12]}...) to "
                  f"{args.golden_out}", file=sys.stderr)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out / MODEL_FILE} ({manifest.size} bytes, sha256 {manifest.sha256[:12]}...) "
        f"test_accuracy={manifest.metrics['test_accuracy']:.4f} in {time.monotonic() - start:.1f}s",
        file=sys.stderr,
    )
    print(manifest.ref)
    return 0


if __name__ == "__main__":
    sys.exit(main())
