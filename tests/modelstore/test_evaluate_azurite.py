"""The evaluation gate end to end on a real Azurite, with real trained models and ONNX Runtime.

Three models from training/train_digits.py, all deterministic (fixed split, fixed seeds, every
golden row scored): the demo model (logreg), a deliberately worse one (logreg on 10% of the training
rows) and a better one (3 nearest neighbours). The verdicts are pure functions of those bytes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from modelship_contract.manifest import ModelManifest, load_model_dir
from modelstore.aliases import Aliases, check_chain
from modelstore.cli import main
from modelstore.datasets import ROWS_FILE, Datasets
from modelstore.reports import reports
from training.train_digits import train, write_golden

pytestmark = pytest.mark.azurite


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate")
    dirs = {"golden": root / "golden"}
    write_golden(dirs["golden"])
    for key, version, kwargs in (("demo", "1.0.0", {}), ("worse", "1.1.0", {"train_fraction": 0.1}),
                                 ("better", "1.2.0", {"estimator": "knn"})):
        dirs[key] = root / key
        train(dirs[key], "digits", version, source_revision="test", **kwargs)
    return dirs


@pytest.fixture
def published(store, store_env, trained, capsys):
    assert main(["dataset", "publish", str(trained["golden"])]) == 0
    for key in ("demo", "worse", "better"):
        assert main(["publish", str(trained[key])]) == 0
    capsys.readouterr()
    return {k: load_model_dir(v) for k, v in trained.items() if k != "golden"}


def _evaluate(capsys, *argv: str) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main(["evaluate", *argv, "--dataset", "digits-golden@1", "--json"])
    return rc, json.loads(capsys.readouterr().out)["report"]


def test_worse_model_is_refused_and_better_one_promoted(store, published, capsys, tmp_path,
                                                         monkeypatch):
    monkeypatch.setenv("MODELSHIP_CACHE_DIR", str(tmp_path / "cache"))
    demo, worse, better = published["demo"], published["worse"], published["better"]
    golden = Datasets(store).manifest("digits-golden@1")

    # A new alias: the candidate alone on the golden set.
    rc, report = _evaluate(capsys, "digits@1.0.0")
    assert rc == 0 and report["verdict"] == "pass" and report["against"] is None
    assert main(["promote", "digits@1.0.0", "--alias", "production", "--reason", "first"]) == 0

    rc, report = _evaluate(capsys, "digits@1.1.0", "--against", "production")
    assert rc == 7 and report["verdict"] == "fail"
    assert "beyond the tolerance of 0.50 points" in report["reason"]
    # ONNX Runtime on the stored bytes agrees with what scikit-learn measured at training time.
    assert report["metrics"]["candidate"]["accuracy"] == worse.metrics["test_accuracy"]
    assert report["metrics"]["against"]["accuracy"] == demo.metrics["test_accuracy"]
    assert report["metrics"]["candidate"]["rows"] == golden.rows == 450
    assert report["candidate"]["sha256"] == worse.sha256
    assert report["against"] == {"ref": "digits@1.0.0", "requested": "production", "sha256": demo.sha256}
    assert report["dataset"] == {"ref": "digits-golden@1", "sha256": golden.sha256, "rows": 450}
    assert report["bar"] == {"task": "classification", "metric": "accuracy", "tolerance": 0.005,
                             "dataset": "digits-golden", "declared_by": "digits@1.0.0"}
    for role in ("candidate", "against"):
        per_class = report["per_class"][role]
        assert sorted(per_class, key=int) == [str(c) for c in range(10)]
        assert sum(c["support"] for c in per_class.values()) == 450
    assert main(["promote", "digits@1.1.0", "--alias", "production", "--reason", "try"]) == 7
    assert "the last report against it says: accuracy 0.8956 vs 0.9711" in capsys.readouterr().err

    rc, report = _evaluate(capsys, "digits@1.2.0", "--against", "production")
    assert rc == 0 and report["verdict"] == "pass", report["reason"]
    assert report["delta"] == pytest.approx(better.metrics["test_accuracy"] - demo.metrics["test_accuracy"],
                                            abs=1e-6)
    assert main(["promote", "digits@1.2.0", "--alias", "production", "--reason", "knn beats logreg"]) == 0
    moves = Aliases(store).history("digits", "production")
    check_chain(moves)
    assert [m["to"] for m in moves] == ["1.0.0", "1.2.0"]
    [stored] = [r for r in reports(store, better) if r[1] == moves[-1]["report"]["sha256"]]
    assert stored[2]["verdict"] == "pass" and stored[2]["against"]["sha256"] == demo.sha256
    # The worse model is still refused against the new production.
    assert main(["promote", "digits@1.1.0", "--alias", "production", "--reason", "try again"]) == 7


def test_a_candidate_cannot_lower_the_bar_it_is_judged_by(store, published, capsys, tmp_path, trained):
    assert main(["promote", "digits@1.0.0", "--alias", "production", "--reason", "r", "--force"]) == 0
    lax = tmp_path / "lax"
    shutil.copytree(trained["worse"], lax)
    manifest = load_model_dir(lax)
    spec = dataclasses.replace(manifest.evaluation, tolerance=1.0)
    lax_manifest: ModelManifest = dataclasses.replace(manifest, version="1.1.1", evaluation=spec)
    (lax / "manifest.json").write_text(lax_manifest.to_json())
    assert main(["publish", str(lax)]) == 0
    capsys.readouterr()
    rc, report = _evaluate(capsys, "digits@1.1.1", "--against", "production")
    assert rc == 7 and report["bar"]["tolerance"] == 0.005 and report["bar"]["declared_by"] == "digits@1.0.0"


def test_the_golden_set_is_immutable_and_verified(store, published, store_env, capsys, trained):
    assert main(["dataset", "publish", str(trained["golden"])]) == 6
    assert "immutable" in capsys.readouterr().err
    assert main(["dataset", "list", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["sha256"] == json.loads((trained["golden"] / "dataset.json").read_text())["sha256"]
    assert store.models() == ["digits"], "the data set is listed as a model"
    blob = store._container.get_blob_client(f"_datasets/digits-golden/1/{ROWS_FILE}")
    rows = json.loads(blob.download_blob().readall())
    rows["labels"][0] = (rows["labels"][0] + 1) % 10  # one flipped label
    blob.upload_blob(json.dumps(rows, sort_keys=True, separators=(",", ":")).encode(), overwrite=True)
    assert main(["evaluate", "digits@1.2.0", "--against", "1.0.0", "--dataset", "digits-golden@1"]) == 4
    assert "sha256 mismatch for data set digits-golden@1" in capsys.readouterr().err


def test_evaluate_rejects_bad_input(store, published, capsys):
    for argv, message in (
        (["digits@1.2.0", "--dataset", "digits-golden"], "is not NAME@VERSION"),
        (["digits@1.2.0", "--dataset", "digits-golden@2"], "no data set digits-golden@2"),
        (["digits@1.2.0", "--against", "1.2.0", "--dataset", "digits-golden@1"], "the candidate itself"),
        (["digits@1.2.0", "--against", "other@1", "--dataset", "digits-golden@1"], "another model"),
    ):
        assert main(["evaluate", *argv]) in (2, 3), argv
        assert message in capsys.readouterr().err, argv
