"""`make watch` against a real Azurite: a promotion starts exactly one release of exactly that version."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest

from delivery.watch import Watcher, parse_alias_ref
from modelstore.aliases import Aliases, alias_blob_name
from modelstore.reports import REPORT_KIND, promotion_gate, store_report
from modelstore.store import ModelStore
from tests.modelstore.conftest import write_model_dir

pytestmark = pytest.mark.azurite


@pytest.fixture
def store(azurite, tmp_path: Path) -> ModelStore:
    s = ModelStore.from_connection_string(azurite.connection_string, f"w-{uuid.uuid4().hex[:16]}",
                                          progress=False)
    for v in ("1", "2", "3"):
        write_model_dir(tmp_path / "src" / v, "digits", v, f"model {v}".encode())
        s.publish(tmp_path / "src" / v)
    return s


class FakeRelease:
    """Records releases; the deployment then serves what was released (unless told to fail)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.serving: str | None = None
        self.fail = False

    def __call__(self, ref: str) -> bool:
        self.calls.append(ref)
        if self.fail:
            return False
        self.serving = ref.split("@")[1]
        return True


def _watcher(store: ModelStore, tmp_path: Path, release: FakeRelease) -> Watcher:
    return Watcher(store, "digits", "production", release, lambda: release.serving,
                   tmp_path / "state" / "watch.json", interval=0.05)


def _promote(store: ModelStore, version: str, against: str | None) -> None:
    candidate = store.resolve(f"digits@{version}")[0]
    baseline = store.resolve(f"digits@{against}")[0] if against else None
    store_report(store, candidate, {
        "schema": 1, "kind": REPORT_KIND, "verdict": "pass", "reason": "test",
        "candidate": {"ref": candidate.ref, "sha256": candidate.sha256},
        "against": {"ref": baseline.ref, "sha256": baseline.sha256} if baseline else None})
    Aliases(store).move("digits", "production", version, "test",
                        gate=promotion_gate(store, candidate, "production", force=False))


def test_each_move_releases_its_own_version_once(store, tmp_path):
    release = FakeRelease()
    watcher = _watcher(store, tmp_path, release)
    assert watcher.step() is None, "released something before any alias existed"
    _promote(store, "1", None)
    assert watcher.step() == "released" and release.calls == ["digits@1"]
    assert watcher.step() is None and release.calls == ["digits@1"], "a move was released twice"
    _promote(store, "2", "1")
    assert watcher.step() == "released" and release.calls == ["digits@1", "digits@2"]
    # A restarted watcher does not replay the move it already released.
    assert _watcher(store, tmp_path, release).step() is None


def test_a_failed_release_is_not_retried_and_the_next_move_is_released(store, tmp_path):
    release = FakeRelease()
    watcher = _watcher(store, tmp_path, release)
    _promote(store, "1", None)
    release.fail = True
    assert watcher.step() == "failed"
    assert watcher.step() is None and release.calls == ["digits@1"]
    release.fail = False
    _promote(store, "2", "1")
    assert watcher.step() == "released" and release.calls == ["digits@1", "digits@2"]


def test_already_running_and_moves_not_written_by_promote(store, tmp_path):
    release = FakeRelease()
    release.serving = "1"
    watcher = _watcher(store, tmp_path, release)
    _promote(store, "1", None)
    assert watcher.step() == "already running" and release.calls == []
    Aliases(store).move("digits", "production", "3", "hotfix", forced=True)
    assert watcher.step() == "released" and release.calls == ["digits@3"]
    # A record edited by hand: a move with no passing report that claims not to be forced.
    blob = store._container.get_blob_client(alias_blob_name("digits", "production"))
    doc = json.loads(blob.download_blob().readall())
    move = {**doc["current"], "seq": doc["current"]["seq"] + 1, "from": "3", "to": "2", "forced": False,
            "report": None}
    doc["moves"].append(move)
    doc["current"] = move
    blob.upload_blob(json.dumps(doc).encode(), overwrite=True)
    assert watcher.step() == "refused" and release.calls == ["digits@3"]


def test_the_loop_notices_a_promotion(store, tmp_path):
    release = FakeRelease()
    watcher = _watcher(store, tmp_path, release)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        _promote(store, "1", None)
        _wait_for(lambda: release.calls == ["digits@1"])
        _promote(store, "2", "1")
        _wait_for(lambda: release.calls == ["digits@1", "digits@2"])
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the watcher did not release within 60 s"
        time.sleep(0.05)


def test_watch_follows_aliases_only():
    assert parse_alias_ref("digits@production") == ("digits", "production")
    for bad in ("digits", "digits@1.2.0", "digits@latest", "@production"):
        with pytest.raises(ValueError, match="is not NAME@ALIAS"):
            parse_alias_ref(bad)


def _append_raw_move(store: ModelStore, **change) -> None:
    """A move written by something other than promote (an old client, a hand edit)."""
    blob = store._container.get_blob_client(alias_blob_name("digits", "production"))
    doc = json.loads(blob.download_blob().readall())
    move = {**doc["current"], "seq": doc["current"]["seq"] + 1, "from": doc["current"]["to"], **change}
    doc["moves"].append(move)
    doc["current"] = move
    blob.upload_blob(json.dumps(doc).encode(), overwrite=True)


def test_a_canary_rollback_is_not_a_release_and_the_rejected_version_is_not_rereleased(store, tmp_path):
    release = FakeRelease()
    watcher = _watcher(store, tmp_path, release)
    _promote(store, "1", None)
    assert watcher.step() == "released"
    _promote(store, "2", "1")
    release.fail = True  # the canary of 2 fails: 1 keeps serving, and the release moves the alias back
    assert watcher.step() == "failed"
    release.fail = False
    assert Aliases(store).roll_back("digits", "production", "2", "1", "canary: drift", by="canary:test",
                                    evidence={"verdict": "fail"}).moved
    # The rollback move names what serves: nothing to release, and it is not "refused" as unreported.
    assert watcher.step() == "already running" and release.calls == ["digits@1", "digits@2"]
    # A move back to the rejected version that promote did not write (it would refuse without --force):
    # not released, even with its old passing report.
    report = Aliases(store).history("digits", "production")[1]["report"]
    _append_raw_move(store, to="2", forced=False, report=report, kind=None)
    assert watcher.step() == "refused" and release.calls == ["digits@1", "digits@2"]
    # --force --reason is the way back, and it is released.
    Aliases(store).move("digits", "production", "1", "back to 1", forced=True)
    Aliases(store).move("digits", "production", "2", "the drift was our test traffic", forced=True)
    assert watcher.step() == "released" and release.calls == ["digits@1", "digits@2", "digits@2"]


def test_a_rollback_move_is_released_where_its_version_does_not_run(store, tmp_path):
    # The cloud pipeline moved the alias back; a local watcher that runs something else converges on it.
    release = FakeRelease()
    release.serving = "3"
    watcher = _watcher(store, tmp_path, release)
    Aliases(store).move("digits", "production", "1", "first", forced=True)
    Aliases(store).move("digits", "production", "2", "second", forced=True)
    Aliases(store).roll_back("digits", "production", "2", "1", "canary: errors", by="canary:argo-rollouts",
                             evidence={"verdict": "fail"})
    assert watcher.step() == "released" and release.calls == ["digits@1"]
