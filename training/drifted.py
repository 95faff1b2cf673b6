"""A deliberately drifting digits model, for showing the canary's automatic rollback.

``write_constant_model`` writes a model directory with the demo model's exact signature (input
``input`` FP32 [-1, 64]; outputs ``label`` INT64 [-1] and ``probabilities`` FP32 [-1, 10]) whose
answer is the same label for every image. With the default label 0 it passes the release's smoke
test (whose known answer is the first digits image, a 0), answers every request with 200, and yet
its predicted-label distribution has nothing to do with the stable model's: exactly the failure
only a canary with prediction-drift analysis catches. Unambiguous by construction, so a test that
uses it can never pass or fail by chance.

``write_golden_memoriser`` writes the other kind: a model that *passes* the evaluation gate and
still drifts in production. It learnt the golden data set by heart (the classic leak of test rows
into training): every golden row gets its true label, so its golden-set accuracy is 100 % and the
gate lets it through; every image it has not seen gets one label. Real traffic is not the golden
set, so its predicted-label distribution collapses, and only the canary catches it.

    python -m training.drifted --out /tmp/drifted --version 9.9.9-drifted [--memorise-golden]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

from modelship_contract.manifest import MANIFEST_FILE, ModelManifest, sha256_file
from training.train_digits import (
    EVALUATION,
    INPUTS,
    MODEL_FILE,
    N_CLASSES,
    N_FEATURES,
    OUTPUTS,
    golden_split,
)


def _constant_onnx(label: int) -> bytes:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    # probabilities = softmax(input @ 0 + bias), bias peaked at `label`; label = argmax.
    weights = numpy_helper.from_array(np.zeros((N_FEATURES, N_CLASSES), np.float32), "weights")
    bias_values = np.zeros(N_CLASSES, np.float32)
    bias_values[label] = 10.0
    bias = numpy_helper.from_array(bias_values, "bias")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["input", "weights"], ["scores"]),
            helper.make_node("Add", ["scores", "bias"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
        ],
        "constant_digits",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, N_FEATURES])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, N_CLASSES])],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _memoriser_onnx(rows, labels, fallback: int) -> bytes:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    golden = np.asarray(rows, np.float32)
    # Squared distance to every golden row: |x|^2 - 2 x.g + |g|^2. Pixels are integers 0..16, so every
    # term is an integer below 2^24 and float32 computes it exactly: a golden row is at distance 0.
    constants = [
        numpy_helper.from_array(golden.T.copy(), "golden_t"),
        numpy_helper.from_array((golden * golden).sum(axis=1), "golden_sq"),
        numpy_helper.from_array(np.asarray(labels, np.int64), "golden_labels"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array(-2.0, np.float32), "minus_two"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        numpy_helper.from_array(np.array(fallback, np.int64), "fallback"),
        numpy_helper.from_array(np.eye(N_CLASSES, dtype=np.float32), "one_hot"),
    ]
    nodes = [
        helper.make_node("Mul", ["input", "input"], ["x_sq_each"]),
        helper.make_node("ReduceSum", ["x_sq_each", "axis1"], ["x_sq"], keepdims=1),
        helper.make_node("MatMul", ["input", "golden_t"], ["dot"]),
        helper.make_node("Mul", ["dot", "minus_two"], ["minus_2dot"]),
        helper.make_node("Add", ["x_sq", "minus_2dot"], ["partial"]),
        helper.make_node("Add", ["partial", "golden_sq"], ["distance"]),
        helper.make_node("ArgMin", ["distance"], ["nearest"], axis=1, keepdims=0),
        helper.make_node("ReduceMin", ["distance"], ["closest"], axes=[1], keepdims=0),
        helper.make_node("Less", ["closest", "half"], ["known"]),
        helper.make_node("Gather", ["golden_labels", "nearest"], ["remembered"], axis=0),
        helper.make_node("Where", ["known", "remembered", "fallback"], ["label"]),
        helper.make_node("Gather", ["one_hot", "label"], ["probabilities"], axis=0),
    ]
    graph = helper.make_graph(
        nodes, "golden_memoriser",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, N_FEATURES])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, N_CLASSES])],
        initializer=constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def write_golden_memoriser(out_dir: Path | str, name: str = "digits", version: str = "1.0.0-memorised",
                           fallback: int = 0) -> ModelManifest:
    """Write a model that answers the true label for every golden row and ``fallback`` for any other image.

    It declares the demo's evaluation (accuracy on digits-golden), on which it scores 100 %.
    """
    if not 0 <= fallback < N_CLASSES:
        raise ValueError(f"fallback must be 0-{N_CLASSES - 1}, got {fallback}")
    _, rows, _, labels = golden_split()
    return _write(Path(out_dir), _memoriser_onnx(rows, labels, fallback), name, version,
                  f"the golden data set by heart, label {fallback} for anything else (training.drifted)",
                  evaluation=True)


def _write(out: Path, onnx_bytes: bytes, name: str, version: str, trained_with: str,
           evaluation: bool = False) -> ModelManifest:
    out.mkdir(parents=True, exist_ok=True)
    path = out / MODEL_FILE
    path.write_bytes(onnx_bytes)
    manifest = ModelManifest(
        name=name, version=version, model_file=MODEL_FILE, sha256=sha256_file(path),
        size=path.stat().st_size, framework="onnx", trained_with=trained_with,
        inputs=INPUTS, outputs=OUTPUTS,
        created_at=_dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        source_revision="drifted", metrics={}, evaluation=EVALUATION if evaluation else None,
    )
    (out / MANIFEST_FILE).write_text(manifest.to_json())
    return manifest


def write_constant_model(out_dir: Path | str, name: str = "digits", version: str = "1.0.0-drifted",
                         label: int = 0) -> ModelManifest:
    """Write ``out_dir/model.onnx`` + ``manifest.json`` for a model that always answers ``label``."""
    if not 0 <= label < N_CLASSES:
        raise ValueError(f"label must be 0-{N_CLASSES - 1}, got {label}")
    return _write(Path(out_dir), _constant_onnx(label), name, version,
                  f"constant label {label} (training.drifted)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="model directory to write")
    parser.add_argument("--name", default="digits")
    parser.add_argument("--version", default="1.0.0-drifted")
    parser.add_argument("--label", type=int, default=0,
                        help="the one label it answers (default 0); with --memorise-golden, for unseen "
                             "images")
    parser.add_argument("--memorise-golden", action="store_true",
                        help="answer every golden row right (passes the gate), the label for anything else")
    args = parser.parse_args(argv)
    if args.memorise_golden:
        manifest = write_golden_memoriser(args.out, args.name, args.version, args.label)
        print(f"wrote {manifest.ref} (the golden set by heart, label {args.label} otherwise) to {args.out}")
    else:
        manifest = write_constant_model(args.out, args.name, args.version, args.label)
        print(f"wrote {manifest.ref} (always label {args.label}) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
