"""A canary's rollback of an alias, against a real Azurite: the move back, its record, the rejected
mark, and the race with someone who moved the alias meanwhile (never overwritten)."""

from __future__ import annotations

import json

import pytest

from modelstore.aliases import ROLLBACK, Aliases, check_chain
from modelstore.cli import main
from modelstore.errors import GateRefused, IntegrityError, InvalidInput
from tests.modelstore.conftest import move_right_after_first_read

pytestmark = pytest.mark.azurite

EVIDENCE = {"kind": "canary", "engine": "test", "verdict": "fail", "step_weight": 10,
            "checks": [{"name": "prediction_drift", "status": "fail", "value": 2.87, "threshold": 0.2}]}
WHY = "canary rolled back 3 at 10%: prediction_drift fail (2.87)"


@pytest.fixture
def released(store, make_model, monkeypatch):
    """digits 1, 2, 3 published; production moved 1 -> 2 -> 3 (3 is the one the canary rejects)."""
    monkeypatch.setenv("MODELSHIP_PUBLISHER", "pipeline:test")
    manifests = {}
    for v in ("1", "2", "3", "4"):
        src, manifests[v] = make_model("digits", v)
        store.publish(src)
    aliases = Aliases(store)
    for v in ("1", "2", "3"):
        aliases.move("digits", "production", v, f"promote {v}", forced=True)
    return manifests


def test_rollback_moves_the_alias_back_with_the_canarys_record(store, released, store_env, capsys):
    done = Aliases(store).roll_back("digits", "production", "3", "2", WHY, by="canary:test",
                                    evidence=EVIDENCE, serving_sha256=released["2"].sha256)
    assert done.moved
    moves = Aliases(store).history("digits", "production")
    check_chain(moves)
    last = moves[-1]
    assert (last["seq"], last["from"], last["to"], last["kind"], last["forced"]) == \
        (4, "3", "2", ROLLBACK, False)
    assert (last["from_sha256"], last["to_sha256"]) == (released["3"].sha256, released["2"].sha256)
    assert last["who"] == "canary:test via pipeline:test" and last["why"] == WHY
    assert last["report"] == EVIDENCE and last["when"].endswith("Z")
    assert Aliases(store).get("digits", "production").rejected == ("3",)

    assert main(["aliases", "digits", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["version"], row["rejected"], row["moved_by"]) == ("2", ["3"], "canary:test via pipeline:test")
    assert main(["aliases", "digits"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[-1] == "REJECTED" and table[1].split()[-1] == "3"
    assert main(["history", "digits", "--alias", "production"]) == 0
    row4 = capsys.readouterr().out.splitlines()[4]
    assert "ROLLBACK canary fail" in row4 and "canary:test via pipeline:test" in row4 and WHY in row4


def test_someone_who_moved_the_alias_before_the_rollback_is_not_overwritten(store, released, capsys):
    Aliases(store).move("digits", "production", "4", "hotfix by hand", forced=True)
    done = Aliases(store).roll_back("digits", "production", "3", "2", WHY, by="canary:test",
                                    evidence=EVIDENCE)
    assert not done.moved and done.current["to"] == "4" and done.current["why"] == "hotfix by hand"
    assert [m["to"] for m in Aliases(store).history("digits", "production")] == ["1", "2", "3", "4"]
    assert Aliases(store).get("digits", "production").rejected == ()


def test_a_move_that_races_the_rollback_wins_and_is_not_overwritten(store, released):
    # Deterministic interleaving: right after the rollback reads the alias (still naming 3), someone
    # moves it to 4. The rollback's conditional write must fail, and the re-read must leave it alone.
    aliases = Aliases(store)
    calls = move_right_after_first_read(aliases, "4", "moved by a person meanwhile")
    done = aliases.roll_back("digits", "production", "3", "2", WHY, by="canary:test", evidence=EVIDENCE)
    assert calls["n"] == 2, "the stale ETag write was not rejected and re-read"
    assert not done.moved and done.current["to"] == "4"
    moves = Aliases(store).history("digits", "production")
    check_chain(moves)
    assert [m["to"] for m in moves] == ["1", "2", "3", "4"]
    assert "rejected" not in Aliases(store).read("digits", "production")[0]


def test_the_cli_says_when_it_left_the_alias(store, released, store_env, capsys, tmp_path):
    evidence = tmp_path / "evidence.json"
    evidence.write_text(json.dumps(EVIDENCE))
    argv = ["rollback", "digits@3", "--alias", "production", "--to", "2", "--reason", WHY,
            "--by", "canary:argo-rollouts", "--evidence", str(evidence)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "digits@production: 3 -> 2 (move 4, rollback by canary:argo-rollouts via pipeline:test)" in out
    assert "3 is marked rejected" in out
    assert Aliases(store).history("digits", "production")[-1]["report"] == EVIDENCE
    # Run again (a retried pipeline step): the alias names 2 now, so nothing is written.
    assert main(argv) == 0
    assert "was left as it is: it names 2 (move 4 by canary:argo-rollouts" in capsys.readouterr().out
    assert len(Aliases(store).history("digits", "production")) == 4
    evidence.write_text("[1, 2")
    assert main(argv) == 2
    assert "not a readable JSON file" in capsys.readouterr().err


def test_the_serving_bytes_must_be_the_version_moved_back_to(store, released):
    with pytest.raises(IntegrityError, match="is not digits@2's"):
        Aliases(store).roll_back("digits", "production", "3", "2", WHY, by="canary:test", evidence=EVIDENCE,
                                 serving_sha256=released["1"].sha256)
    with pytest.raises(InvalidInput, match="both '3'"):
        Aliases(store).roll_back("digits", "production", "3", "3", WHY, by="canary:test", evidence=EVIDENCE)
    assert Aliases(store).get("digits", "production").version == "3", "a refused rollback moved the alias"


def test_a_rejected_version_needs_force_to_be_promoted_again(store, released, store_env, capsys):
    Aliases(store).roll_back("digits", "production", "3", "2", WHY, by="canary:test", evidence=EVIDENCE)
    with pytest.raises(GateRefused, match=r"its canary rejected it on .*prediction_drift fail.*--force"):
        Aliases(store).move("digits", "production", "3", "try again")
    assert main(["promote", "digits@3", "--alias", "production", "--reason", "again"]) == 7
    assert "A new evaluation cannot undo a verdict on live traffic" in capsys.readouterr().err
    assert main(["promote", "digits@3", "--alias", "production", "--reason", "the drift was our traffic",
                 "--force"]) == 0
    last = Aliases(store).history("digits", "production")[-1]
    assert last["forced"] and last["overrides_rejection"]["why"] == WHY
    assert Aliases(store).get("digits", "production").rejected == ()
    capsys.readouterr()
    assert main(["history", "digits", "--alias", "production"]) == 0
    assert "FORCED over rejection" in capsys.readouterr().out.splitlines()[-1]
