"""Aliases against a real Azurite: resolution, the recorded moves, the gate, concurrent promoters."""

from __future__ import annotations

import base64
import json
import threading

import pytest

from modelstore.aliases import Aliases, alias_blob_name, check_chain, identity_from_token
from modelstore.cli import main
from modelstore.errors import GateRefused, IntegrityError, InvalidInput, NotFound
from modelstore.reports import REPORT_KIND, store_report
from modelstore.store import ModelStore
from tests.modelstore.conftest import move_right_after_first_read

pytestmark = pytest.mark.azurite


def _report(candidate, against=None, verdict="pass"):
    """A report as `evaluate` writes it (the scoring itself is tested in test_evaluate_*)."""
    return {
        "schema": 1, "kind": REPORT_KIND, "verdict": verdict, "reason": f"test verdict {verdict}",
        "candidate": {"ref": candidate.ref, "sha256": candidate.sha256},
        "against": {"ref": against.ref, "sha256": against.sha256} if against else None,
        "dataset": {"ref": "digits-golden@1", "sha256": "0" * 64},
    }


def test_alias_resolves_wherever_a_version_does(store, make_model, tmp_path, store_env, capsys):
    src1, m1 = make_model("digits", "1.0.0")
    src2, m2 = make_model("digits", "1.1.0")
    store.publish(src1)
    store.publish(src2)
    store_report(store, m1, _report(m1))
    assert main(["promote", "digits@1.0.0", "--alias", "production", "--reason", "first release"]) == 0
    assert "digits@production: (new) -> 1.0.0" in capsys.readouterr().out

    # latest moved on to 1.1.0; production stays where it was promoted.
    assert store.resolve("digits@production")[0] == m1
    assert store.resolve("digits@latest")[0] == m2
    result = store.fetch("digits@production", tmp_path / "model")
    assert result.manifest == m1
    assert main(["show", "digits@production"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digits@1.0.0") and "aliases    production" in out
    assert main(["aliases", "digits", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["alias"], row["version"], row["sha256"], row["moves"]) == \
        ("production", "1.0.0", m1.sha256, 1)
    # Aliases are not versions and not models.
    assert [v.version for v in store.versions("digits")] == ["1.0.0", "1.1.0"]
    assert store.models() == ["digits"]


def test_every_move_is_recorded_with_who_when_why_and_report(store, make_model, store_env, capsys,
                                                              monkeypatch):
    monkeypatch.setenv("MODELSHIP_PUBLISHER", "pipeline:release")
    sources = {v: make_model("digits", v) for v in ("1", "2")}
    for src, _ in sources.values():
        store.publish(src)
    m1, m2 = sources["1"][1], sources["2"][1]
    store_report(store, m1, _report(m1))
    ref2 = store_report(store, m2, _report(m2, against=m1))
    aliases = Aliases(store)
    assert main(["promote", "digits@1", "--alias", "production", "--reason", "baseline"]) == 0
    assert main(["promote", "digits@2", "--alias", "production", "--reason", "better on golden@1"]) == 0
    assert main(["promote", "digits@1", "--alias", "production", "--reason", "roll back by hand",
                 "--force"]) == 0
    capsys.readouterr()
    moves = aliases.history("digits", "production")
    check_chain(moves)
    assert [(m["from"], m["to"], m["why"], m["forced"]) for m in moves] == [
        (None, "1", "baseline", False), ("1", "2", "better on golden@1", False),
        ("2", "1", "roll back by hand", True)]
    assert {m["who"] for m in moves} == {"pipeline:release"}
    assert moves[1]["report"] == ref2 and moves[1]["report"]["against"] == "digits@1"
    assert moves[1]["to_sha256"] == m2.sha256 and moves[1]["from_sha256"] == m1.sha256
    assert all(m["when"].endswith("Z") for m in moves)
    assert main(["history", "digits", "--alias", "production"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["SEQ", "WHEN", "FROM", "TO", "WHO"]
    assert "FORCED" in lines[3] and "roll back by hand" in lines[3]
    assert "pass vs digits@1" in lines[2]


def test_gate_refuses_without_a_passing_report_against_the_current_model(store, make_model, store_env,
                                                                         capsys):
    src1, m1 = make_model("digits", "1")
    src2, m2 = make_model("digits", "2")
    store.publish(src1)
    store.publish(src2)
    # A new alias needs a passing report too.
    assert main(["promote", "digits@1", "--alias", "production", "--reason", "r"]) == 7
    assert "no passing evaluation report" in capsys.readouterr().err
    store_report(store, m1, _report(m1))
    assert main(["promote", "digits@1", "--alias", "production", "--reason", "r"]) == 0
    # A failing report, and a passing one against something else, do not open the gate.
    store_report(store, m2, _report(m2, against=m1, verdict="fail"))
    store_report(store, m2, _report(m2, against=None))
    capsys.readouterr()
    assert main(["promote", "digits@2", "--alias", "production", "--reason", "r"]) == 7
    err = capsys.readouterr().err
    assert "the last report against it says: test verdict fail" in err
    assert "--against production" in err and "--force --reason" in err
    assert Aliases(store).get("digits", "production").version == "1", "a refused move changed the alias"
    assert len(Aliases(store).history("digits", "production")) == 1, "a refused move was recorded"


def test_a_promoter_that_loses_the_race_is_judged_again_against_the_winner(store, make_model):
    # Deterministic interleaving: right after promoter A reads the alias, B force-moves it.
    srcs = {v: make_model("digits", v) for v in ("1", "2", "3")}
    for src, _ in srcs.values():
        store.publish(src)
    (m1, m2, m3) = (srcs[v][1] for v in ("1", "2", "3"))
    store_report(store, m1, _report(m1))
    store_report(store, m2, _report(m2, against=m1))
    from modelstore.reports import promotion_gate

    aliases = Aliases(store)
    aliases.move("digits", "production", "1", "baseline", gate=promotion_gate(store, m1, "production",
                                                                               force=False))
    calls = move_right_after_first_read(aliases, "3", "hotfix")
    with pytest.raises(GateRefused, match=r"names 3"):
        aliases.move("digits", "production", "2", "better", gate=promotion_gate(store, m2, "production",
                                                                                force=False))
    assert calls["n"] == 2, "the stale ETag write was not rejected and judged again"
    moves = Aliases(store).history("digits", "production")
    check_chain(moves)
    assert [m["to"] for m in moves] == ["1", "3"]
    assert m3.sha256 == moves[-1]["to_sha256"]


def test_eight_concurrent_promoters_lose_no_move(azurite, container, make_model):
    first = ModelStore.from_connection_string(azurite.connection_string, container, progress=False)
    versions = [f"1.0.{i}" for i in range(8)]
    for v in ["0", *versions]:
        first.publish(make_model("digits", v)[0])
    Aliases(first).move("digits", "production", "0", "baseline", forced=True)
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def promote(version: str) -> None:
        try:
            own = ModelStore.from_connection_string(azurite.connection_string, container, progress=False)
            barrier.wait()
            Aliases(own).move("digits", "production", version, f"promoter {version}", forced=True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    moves = Aliases(first).history("digits", "production")
    check_chain(moves)  # seq 1..9, each move starts where the previous one ended
    assert sorted(m["to"] for m in moves[1:]) == versions, "a concurrent promoter's move was lost"
    assert {m["why"] for m in moves[1:]} == {f"promoter {v}" for v in versions}
    info = Aliases(first).get("digits", "production")
    assert (info.version, info.moves) == (moves[-1]["to"], 9)


def test_alias_and_version_names_never_collide(store, make_model, store_env, capsys, tmp_path):
    src, _ = make_model("digits", "stable")
    store.publish(src)
    with pytest.raises(InvalidInput, match="'stable' is also a version"):
        Aliases(store).move("digits", "stable", "stable", "r", forced=True)
    Aliases(store).move("digits", "production", "stable", "r", forced=True)
    with pytest.raises(InvalidInput, match="'production' is an alias"):
        store.publish(make_model("digits", "production")[0])
    with pytest.raises(InvalidInput, match="already names stable"):
        Aliases(store).move("digits", "production", "stable", "again", forced=True)
    capsys.readouterr()
    for bad in ("Prod", "latest", "1st", "a_b"):
        assert main(["promote", "digits@stable", "--alias", bad, "--reason", "r", "--force"]) == 2
        assert "alias" in capsys.readouterr().err
    assert main(["promote", "digits@stable", "--alias", "staging", "--reason", "  ", "--force"]) == 2
    assert "needs a reason" in capsys.readouterr().err
    assert main(["history", "digits", "--alias", "staging"]) == 3
    assert "has no alias 'staging'" in capsys.readouterr().err
    assert main(["fetch", "digits@staging", str(tmp_path / "never")]) == 3
    err = capsys.readouterr().err
    assert "no version or alias 'staging'" in err and "aliases: production" in err


def test_a_corrupt_alias_record_is_an_integrity_error(store, make_model, store_env, capsys):
    store.publish(make_model("digits", "1")[0])
    Aliases(store).move("digits", "production", "1", "r", forced=True)
    store._container.get_blob_client(alias_blob_name("digits", "production")).upload_blob(
        b'{"moves": []}', overwrite=True)
    with pytest.raises(IntegrityError, match="corrupt"):
        store.resolve("digits@production")
    assert main(["aliases", "digits"]) == 4
    assert "is corrupt" in capsys.readouterr().err


def test_check_chain_finds_a_lost_or_reordered_move():
    good = [{"seq": 1, "from": None, "to": "1"}, {"seq": 2, "from": "1", "to": "2"}]
    check_chain(good)
    with pytest.raises(IntegrityError, match="broken at move 2"):
        check_chain([good[0], {"seq": 2, "from": "0", "to": "2"}])
    with pytest.raises(IntegrityError, match="broken at move 2"):
        check_chain([good[0], {"seq": 3, "from": "1", "to": "2"}])


def _jwt(claims: dict) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"e30.{body}.sig"


def test_identity_is_read_from_the_signed_in_token():
    assert identity_from_token(_jwt({"upn": "ana@contoso.com", "oid": "x"})) == "ana@contoso.com"
    assert identity_from_token(_jwt({"appid": "1234", "oid": "x"})) == "app:1234"
    assert identity_from_token(_jwt({"oid": "abcd"})) == "oid:abcd"
    assert identity_from_token("not-a-token") is None
    assert identity_from_token(_jwt({"upn": 5})) is None


def test_missing_alias_is_not_found(store, make_model):
    store.publish(make_model("digits", "1")[0])
    with pytest.raises(NotFound, match=r"no version or alias 'production'.*aliases: none"):
        store.resolve("digits@production")
