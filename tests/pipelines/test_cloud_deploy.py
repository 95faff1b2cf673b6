"""scripts/cloud-deploy.sh, the steps both pipelines run, with recording stand-ins for the
``pulumi``, ``modelship-models`` and ``az`` CLIs and a V2 server on 127.0.0.1 for the real smoke
test (``python -m delivery.smoke``). Checks what a deploy does, in which order, and what a failed
smoke test leads to."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FAKE_PULUMI = r"""#!/usr/bin/env bash
echo "pulumi $*" >> "$CALLS"
case "$1" in
  stack)
    if [ "$2" = output ]; then
      var="FAKE_OUT_$3"
      [ -f "$CALLS.rolled-back" ] && [ -n "$(eval echo "\${FAKE_ROLLED_$3:-}")" ] && var="FAKE_ROLLED_$3"
      [ -n "${!var:-}" ] || { echo "error: no output $3" >&2; exit 255; }
      echo "${!var}"
    fi ;;
  config)
    [ "$2" = set ] && exit 0
    var="FAKE_CFG_$3"; [ -n "${!var:-}" ] || exit 255
    echo "${!var}" ;;
  up)
    case "$*" in *"rollback to"*) touch "$CALLS.rolled-back" ;; esac
    # Keep the policy pack's configuration for the test to read (the script removes its file).
    prev=""
    for arg in "$@"; do
      [ "$prev" = --policy-pack-config ] && cp "$arg" "$CALLS.policy.json"
      prev="$arg"
    done
    exit "${FAKE_UP_RC:-0}" ;;
esac
exit 0
"""
FAKE_MODELS = r"""#!/usr/bin/env bash
echo "modelship-models $* url=$MODELSHIP_STORE_URL container=$MODELSHIP_STORE_CONTAINER" >> "$CALLS"
if [ "$1" = rollback ]; then
  # Keep the exact arguments and the evidence file (the script removes it) for the test to replay.
  printf '%s\0' "$@" > "$CALLS.rollback.args"
  prev=""
  for arg in "$@"; do [ "$prev" = --evidence ] && cp "$arg" "$CALLS.evidence.json"; prev="$arg"; done
fi
case "$1" in
  aliases) echo "${FAKE_ALIASES:-[]}" ;;
  evaluate) exit "${FAKE_EVALUATE_RC:-0}" ;;
esac
"""
FAKE_AZ = r"""#!/usr/bin/env bash
echo "az $*" >> "$CALLS"
case "$*" in
  *download*)
    [ -n "${FAKE_GOOD_SHA:-}" ] || exit 1
    while [ $# -gt 0 ]; do [ "$1" = --file ] && echo "$FAKE_GOOD_SHA" > "$2"; shift; done ;;
esac
"""
FAKE_DOCKER = r"""#!/usr/bin/env bash
echo "docker $*" >> "$CALLS"
case "$*" in
  "buildx inspect "*) [ -n "${FAKE_BUILDER_EXISTS:-}" ] || exit 1 ;;
esac
"""
FAKE_KUBECTL = r"""#!/usr/bin/env bash
# The Rollout as Argo Rollouts reports it; records the call and the kubeconfig it was given.
mode="$(stat -c %a "$KUBECONFIG")"
echo "kubectl $* mode=$mode head=$(head -c 14 "$KUBECONFIG") file=$KUBECONFIG" >> "$CALLS"
case "$1 $2" in
  "get replicasets") if [ -n "${FAKE_RS:-}" ]; then echo "$FAKE_RS"; else echo '{"items": []}'; fi ;;
  "get analysisruns.argoproj.io") if [ -n "${FAKE_RUN:-}" ]; then echo "$FAKE_RUN"; else echo '{}'; fi ;;
  logs*) echo "${FAKE_LOG:-}" ;;
  *) echo "$FAKE_ROLLOUT" ;;
esac
"""
FAKE_NPM = r"""#!/usr/bin/env bash
# Installs a stand-in cdxgen where the real one would go (scripts/install-cdxgen.sh runs it there).
echo "npm $* in=$PWD" >> "$CALLS"
mkdir -p node_modules/.bin && printf '#!/bin/sh\n' > node_modules/.bin/cdxgen
chmod +x node_modules/.bin/cdxgen
"""
FAKE_NODE = r"""#!/usr/bin/env bash
echo 20
"""
FAKE_PYTHON = r"""#!/usr/bin/env bash
# venv creation is recorded and faked (no network); everything else runs the real interpreter.
if [ "$1 $2" = "-m preflight" ]; then
  echo "modelship-doctor ${*:3}" >> "$CALLS"
  exit "${FAKE_DOCTOR_RC:-0}"
fi
if [ "$1 $2" = "-m venv" ]; then
  echo "python -m venv $3" >> "$CALLS"
  mkdir -p "$3/bin"
  printf '#!/bin/sh\necho "pip $*" >> "$CALLS"\n' > "$3/bin/pip"; chmod +x "$3/bin/pip"
  exit 0
fi
exec REAL_PYTHON "$@"
"""


class _V2(BaseHTTPRequestHandler):
    def _send(self, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send({"ready": True} if self.path.endswith("/ready") else {"name": "digits", "versions": ["2"]})

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send({"model_name": "digits", "model_version": "2",
                    "outputs": [{"name": "label", "datatype": "INT64", "shape": [1], "data": [0]}]})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _V2)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _exe(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def deploy(tmp_path, server):
    """A checkout with the script, stand-in CLIs on PATH; returns run(command, **env) -> (proc, calls)."""
    if not shutil.which("git"):
        pytest.fail("git is required")
    root = tmp_path / "repo"
    _exe(root / "scripts" / "cloud-deploy.sh", (REPO / "scripts" / "cloud-deploy.sh").read_text())
    _exe(root / "scripts" / "install-cdxgen.sh", (REPO / "scripts" / "install-cdxgen.sh").read_text())
    shutil.copytree(REPO / "tools" / "cdxgen", root / "tools" / "cdxgen")
    (root / "delivery").symlink_to(REPO / "delivery")
    (root / "modelship_contract").symlink_to(REPO / "modelship_contract")  # the smoke test's image contract
    _exe(root / "policy" / "venv" / "bin" / "python", "#!/bin/sh\n")  # the pack's venv exists already
    git = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci", "-C", str(root)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "scripts", "delivery", "modelship_contract"], check=True)
    subprocess.run([*git, "commit", "-qm", "good"], check=True)
    good = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    (root / "CHANGE").write_text("new\n")
    subprocess.run([*git, "add", "CHANGE"], check=True)
    subprocess.run([*git, "commit", "-qm", "new"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                         text=True).stdout.strip()
    bin_dir = tmp_path / "bin"
    _exe(bin_dir / "pulumi", FAKE_PULUMI)
    _exe(bin_dir / "modelship-models", FAKE_MODELS)
    _exe(bin_dir / "az", FAKE_AZ)
    _exe(bin_dir / "docker", FAKE_DOCKER)
    _exe(bin_dir / "kubectl", FAKE_KUBECTL)
    _exe(bin_dir / "npm", FAKE_NPM)
    _exe(bin_dir / "node", FAKE_NODE)
    (root / "Pulumi.dev.yaml").write_text((REPO / "Pulumi.dev.yaml").read_text())
    (root / "Pulumi.prod.yaml").write_text((REPO / "Pulumi.prod.yaml").read_text())
    _exe(bin_dir / "python", FAKE_PYTHON.replace("REAL_PYTHON", sys.executable))
    calls = tmp_path / "calls.log"

    def run(command: str, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
        calls.write_text("")
        Path(f"{calls}.rolled-back").unlink(missing_ok=True)
        Path(f"{calls}.policy.json").unlink(missing_ok=True)
        base = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path), "CALLS": str(calls),
            "PULUMI_STACK": "dev", "PULUMI_BACKEND_URL": "azblob://pulumi-state?storage_account=modelshipstate",
            "PYTHON": str(bin_dir / "python"), "SMOKE_TIMEOUT": "5",
            "FAKE_OUT_blobEndpoint": "https://modelshipmodels.blob.core.windows.net/",
            "FAKE_OUT_modelContainer": "models", "FAKE_OUT_url": server, "FAKE_OUT_model": "digits@2",
            "FAKE_CFG_registryName": "modelshipdevacr01",
            "FAKE_OUT_verifiedDigest": DIGEST, "FAKE_OUT_modelSigner": "ecdsa-p256:ab12",
            "FAKE_OUT_sbomDigest": SBOM_DIGEST,
        }
        proc = subprocess.run(["bash", str(root / "scripts" / "cloud-deploy.sh"), command],
                              env={**base, **env}, capture_output=True, text=True, timeout=60)
        return proc, calls.read_text().splitlines()

    run.root, run.sha, run.good = root, sha, good  # type: ignore[attr-defined]
    return run


def _index(calls: list[str], prefix: str) -> int:
    return next(i for i, c in enumerate(calls) if c.startswith(prefix))


def test_deploy_fetches_then_ups_with_policy_then_smokes_then_records(deploy):
    proc, calls = deploy("deploy")
    assert proc.returncode == 0, proc.stderr
    login = _index(calls, "pulumi login --non-interactive azblob://pulumi-state?storage_account=modelshipstate")
    select = _index(calls, "pulumi stack select --non-interactive dev")
    fetch = _index(calls, "modelship-models fetch --quiet digits@production ")
    store = "url=https://modelshipmodels.blob.core.windows.net/ container=models"
    assert calls[fetch].endswith(f"{deploy.root}/app/model {store}")
    builder = calls.index("docker buildx create --name modelship --driver docker-container --bootstrap")
    acr = calls.index("az acr login --name modelshipdevacr01 --output none")
    doctor = _index(calls, "modelship-doctor --stack dev --for up")
    up = calls.index("pulumi up --yes --non-interactive --policy-pack policy")
    assert _index(calls, "npm install --omit=optional") < up  # the SBOM step's cdxgen
    record = _index(calls, "az storage blob upload --auth-mode login")
    # ModelImage builds on a docker-container builder and pushes with the identity's ACR token.
    assert login < select < fetch < builder < acr < doctor < up < record
    assert f"--account-name modelshipstate --container-name pulumi-state --name modelship-last-good/dev " \
           f"--overwrite --data {deploy.sha}" in calls[record]
    assert "PASSED http://127.0.0.1" in proc.stdout and "digits@2" in proc.stdout
    # What runs, who signed its model, and its SBOM in the registry.
    assert f"running {DIGEST}, model signed by ecdsa-p256:ab12, SBOM {SBOM_DIGEST} " in proc.stderr


def test_failed_smoke_fails_the_deploy_and_tries_the_rollback(deploy):
    proc, calls = deploy("deploy", FAKE_OUT_model="digits@3")  # the server still serves version 2
    assert proc.returncode == 1
    assert "FAILED: wrong model version: expected digits@3" in proc.stderr
    assert "no last good revision recorded for dev: nothing to roll back to" in proc.stderr
    assert "deploy failed its smoke test" in proc.stderr
    assert any("az storage blob download" in c for c in calls)
    assert not any("az storage blob upload" in c for c in calls)


def test_failed_smoke_redeploys_the_last_good_revision(deploy):
    proc, calls = deploy("deploy", FAKE_OUT_model="digits@3", FAKE_ROLLED_model="digits@2",
                         FAKE_GOOD_SHA=deploy.good)
    assert proc.returncode == 1  # the deploy failed, even though the rollback worked
    assert f"roll back dev to {deploy.good}" in proc.stderr
    assert f"rolled back: dev serves revision {deploy.good} again" in proc.stderr
    assert "deploy failed its smoke test" in proc.stderr
    first_up = calls.index("pulumi up --yes --non-interactive --policy-pack policy")
    rollback_up = calls.index(f"pulumi up --yes --non-interactive --policy-pack policy "
                              f"--message rollback to {deploy.good}")
    worktree_fetch = [c for c in calls[first_up:rollback_up]
                      if c.startswith("modelship-models fetch") and str(deploy.root) not in c]
    assert worktree_fetch, "the rollback pulls the model of the good revision into its own checkout"
    assert first_up < rollback_up
    assert not any("az storage blob upload" in c for c in calls)  # a failed deploy is never "good"
    worktrees = subprocess.run(["git", "-C", str(deploy.root), "worktree", "list"], capture_output=True,
                               text=True).stdout.splitlines()
    assert len(worktrees) == 1


def test_rollback_refuses_when_the_good_revision_is_the_failing_one(deploy):
    proc, _ = deploy("rollback", FAKE_GOOD_SHA=deploy.sha)
    assert proc.returncode == 1
    assert "the failing revision is the last good one: roll forward instead" in proc.stderr


def test_failed_up_stops_before_the_smoke_test(deploy):
    proc, calls = deploy("deploy", FAKE_UP_RC="1")
    assert proc.returncode != 0
    assert not any(c.startswith("az storage") for c in calls)  # nothing recorded, no rollback
    assert "smoke test" not in proc.stderr


def test_pinned_version_must_be_what_the_stack_deployed(deploy):
    proc, _ = deploy("deploy", FAKE_CFG_modelVersion="5")
    assert proc.returncode == 1
    assert "the stack deployed digits@2 but config modelVersion is 5" in proc.stderr


def test_first_deploy_without_a_store_skips_the_fetch_and_fails_with_the_reason(deploy):
    proc, calls = deploy("deploy", FAKE_OUT_blobEndpoint="", FAKE_OUT_url="",
                         FAKE_OUT_modelStatus="no model at app/model")
    assert proc.returncode == 1
    assert not any(c.startswith("modelship-models") for c in calls)
    assert "has no model store yet" in proc.stderr
    assert "serves no model: no model at app/model" in proc.stderr


def test_preview_fetches_the_model_runs_the_policy_pack_and_changes_nothing(deploy):
    """Blocker 5: without the model a PR preview shows the service being deleted."""
    proc, calls = deploy("preview")
    assert proc.returncode == 0, proc.stderr
    fetch = _index(calls, "modelship-models fetch --quiet digits@production ")
    doctor = _index(calls, "modelship-doctor --stack dev --for preview")
    assert fetch < doctor < calls.index("pulumi preview --non-interactive --diff --policy-pack policy")
    assert not any(c.startswith(("pulumi up", "az ", "docker ")) for c in calls)


def test_a_failed_doctor_stops_before_any_change(deploy):
    proc, calls = deploy("deploy", FAKE_DOCTOR_RC="1")
    assert proc.returncode == 1
    assert not any(c.startswith("pulumi up") for c in calls)


def test_an_existing_builder_is_reused(deploy):
    proc, calls = deploy("prepare-push", FAKE_BUILDER_EXISTS="1")
    assert proc.returncode == 0, proc.stderr
    assert "docker buildx inspect modelship" in calls
    assert not any(c.startswith("docker buildx create") for c in calls)
    assert "az acr login --name modelshipdevacr01 --output none" in calls


def test_prepare_push_installs_the_locked_cdxgen_for_the_sbom_step_once(deploy):
    """ImageSbom runs during `pulumi up` on this agent and lists the image's Debian packages with cdxgen."""
    proc, calls = deploy("prepare-push", FAKE_BUILDER_EXISTS="1")
    assert proc.returncode == 0, proc.stderr
    cdx = deploy.root / ".local" / "cdxgen"
    npm = f"npm install --omit=optional --no-save --no-audit --no-fund --loglevel=error in={cdx}"
    assert calls.count(npm) == 1
    assert (cdx / "package-lock.json").read_bytes() == (REPO / "tools/cdxgen/package-lock.json").read_bytes()
    proc, calls = deploy("prepare-push", FAKE_BUILDER_EXISTS="1")
    assert proc.returncode == 0, proc.stderr
    assert not any(c.startswith("npm ") for c in calls)  # the same lock is installed already


def test_a_stack_without_a_cloud_secrets_provider_fails_before_any_pulumi_call(deploy):
    """Blocker 2: a self-managed backend with no secretsprovider would prompt for a passphrase."""
    stack_file = deploy.root / "Pulumi.dev.yaml"
    stack_file.write_text("\n".join(line for line in stack_file.read_text().splitlines()
                                     if not line.startswith("secretsprovider:")))
    proc, calls = deploy("preview")
    assert proc.returncode == 1
    assert "names no cloud secretsprovider" in proc.stderr and "change-secrets-provider" in proc.stderr
    assert calls == []
    proc, _ = deploy("preview", PULUMI_CONFIG_PASSPHRASE="from-a-secret-store")
    assert proc.returncode == 0, proc.stderr


def test_missing_stack_and_unknown_command_fail_clearly(deploy):
    proc, _ = deploy("deploy", PULUMI_STACK="")
    assert proc.returncode == 1 and "PULUMI_STACK is not set" in proc.stderr
    proc, _ = deploy("destroy")
    assert proc.returncode == 1 and "unknown command 'destroy'" in proc.stderr


# -- evaluate -> promote -> deploy the alias (issue 13) -----------------------------------------

PRODUCTION_AT_2 = '[{"alias": "production", "version": "2"}]'


def test_a_candidate_is_evaluated_and_promoted_before_the_alias_is_fetched_and_deployed(deploy):
    proc, calls = deploy("deploy", MODEL_CANDIDATE="digits@3", FAKE_ALIASES=PRODUCTION_AT_2)
    assert proc.returncode == 0, proc.stderr
    evaluate = _index(calls, "modelship-models evaluate")
    promote = _index(calls, "modelship-models promote")
    fetch, up = _index(calls, "modelship-models fetch"), _index(calls, "pulumi up")
    assert evaluate < promote < fetch < up
    assert "evaluate --quiet digits@3 --against production --dataset digits-golden@1" in calls[evaluate]
    assert "promote --quiet digits@3 --alias production --reason" in calls[promote]
    assert "fetch --quiet digits@production" in calls[fetch], "the pipeline does not deploy the alias"
    assert "url=https://modelshipmodels.blob.core.windows.net/ container=models" in calls[evaluate]


def test_a_candidate_refused_by_the_gate_fails_the_run_before_any_change(deploy):
    proc, calls = deploy("deploy", MODEL_CANDIDATE="digits@3", FAKE_ALIASES=PRODUCTION_AT_2,
                         FAKE_EVALUATE_RC="7")
    assert proc.returncode != 0
    assert not [c for c in calls if c.startswith(("modelship-models promote", "modelship-models fetch",
                                                  "pulumi up"))], calls


def test_without_a_candidate_or_when_the_alias_names_it_nothing_is_promoted(deploy):
    for env in ({}, {"MODEL_CANDIDATE": "digits@2", "FAKE_ALIASES": PRODUCTION_AT_2}):
        proc, calls = deploy("deploy", **env)
        assert proc.returncode == 0, proc.stderr
        release = ("modelship-models evaluate", "modelship-models promote")
        assert not [c for c in calls if c.startswith(release)]
        assert any("fetch --quiet digits@production" in c for c in calls)


def test_a_new_alias_is_judged_on_the_candidate_alone(deploy):
    proc, calls = deploy("promote-candidate", MODEL_CANDIDATE="digits@1")
    assert proc.returncode == 0, proc.stderr
    evaluate = calls[_index(calls, "modelship-models evaluate")]
    assert "--against" not in evaluate and "--dataset digits-golden@1" in evaluate


# -- dev -> prod: the same digest (issue 14) ----------------------------------------------------

DIGEST = "sha256:" + "d" * 64
SBOM_DIGEST = "sha256:" + "5" * 64
RELEASE = json.dumps({"image": f"modelshipdevacr01.azurecr.io/modelship/digits:r-digits-2@{DIGEST}",
                      "digest": DIGEST, "model": "digits", "modelVersion": "2", "modelSize": 1000}, indent=2)


def test_release_prints_the_verified_digest_alone(deploy):
    proc, _ = deploy("release", FAKE_OUT_release=RELEASE)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == DIGEST + "\n"  # stdout is the digest only: pipelines capture it


def test_deploy_prod_sets_dev_release_and_allows_only_its_digest(deploy):
    proc, calls = deploy("deploy-prod", PULUMI_STACK="prod", RELEASE_DIGEST=DIGEST, FAKE_OUT_release=RELEASE)
    assert proc.returncode == 0, proc.stderr
    select = calls.index("pulumi stack select --non-interactive prod")
    read = calls.index("pulumi stack output release --json --stack dev")
    config = _index(calls, "pulumi config set release ")
    up = _index(calls, "pulumi up --yes --non-interactive --policy-pack policy --policy-pack-config ")
    assert select < read < config < up
    assert json.loads(calls[config].split(" ", 4)[4]) == json.loads(RELEASE)
    policy = json.loads(Path(f"{deploy.root.parent}/calls.log.policy.json").read_text())
    assert policy == {"prod-only-dev-verified-digests": {"stage": "prod", "verifiedDigests": [DIGEST]}}
    # prod never builds or fetches: no model pull, no builder, no ACR login, no docker at all.
    assert not [c for c in calls if c.startswith(("modelship-models", "docker ", "az acr login"))]
    assert "PASSED http://127.0.0.1" in proc.stdout


def test_deploy_prod_refuses_when_dev_moved_on_or_nothing_was_verified(deploy):
    other = "sha256:" + "e" * 64
    proc, calls = deploy("deploy-prod", PULUMI_STACK="prod", RELEASE_DIGEST=other, FAKE_OUT_release=RELEASE)
    assert proc.returncode == 1
    assert f"stack dev now runs {DIGEST}, not {other} that this run verified" in proc.stderr
    assert not [c for c in calls if c.startswith(("pulumi up", "pulumi config set"))]
    proc, calls = deploy("deploy-prod", PULUMI_STACK="prod", RELEASE_DIGEST=DIGEST)
    assert proc.returncode == 1 and "stack dev has no release output: deploy dev first" in proc.stderr
    proc, calls = deploy("deploy-prod", PULUMI_STACK="prod", RELEASE_DIGEST="latest")
    assert proc.returncode == 1 and "is not a sha256 digest" in proc.stderr
    assert not [c for c in calls if c.startswith("pulumi up")]


def _rollout(**status) -> str:
    return json.dumps({"metadata": {"name": "model-server", "generation": 3},
                       "spec": {"strategy": {"canary": {"steps": [{"setWeight": 10}, {"analysis": {}}]}}},
                       "status": {"observedGeneration": "3", "currentPodHash": "new", **status}})


CANARY = {"FAKE_OUT_rolloutName": "model-server", "FAKE_OUT_namespace": "modelship",
          "FAKE_OUT_kubeconfig": "apiVersion: v1\nkind: Config\n", "CANARY_TIMEOUT": "30"}


def test_deploy_waits_for_the_promoted_canary_before_the_smoke_test(deploy):
    proc, calls = deploy("deploy", **CANARY, FAKE_ROLLOUT=_rollout(phase="Healthy", stableRS="new"))
    assert proc.returncode == 0, proc.stderr
    up = calls.index("pulumi up --yes --non-interactive --policy-pack policy")
    kubeconfig = _index(calls, "pulumi stack output kubeconfig --show-secrets")
    kubectl = _index(calls, "kubectl get rollouts.argoproj.io model-server --namespace modelship --output")
    record = _index(calls, "az storage blob upload --auth-mode login")
    assert up < kubeconfig < kubectl < record
    # The stack's kubeconfig (kubelogin, no credential in it) in a private file, gone afterwards.
    assert " mode=600 head=apiVersion: v1 file=" in calls[kubectl]
    assert not Path(calls[kubectl].split(" file=")[1]).exists()
    assert "canary: promoted" in proc.stderr and "PASSED http://127.0.0.1" in proc.stdout


def test_an_aborted_canary_fails_the_run_and_leaves_the_stable_version(deploy):
    aborted = _rollout(phase="Degraded", abort=True, stableRS="old",
                       message="RolloutAborted: Metric \"canary-analysis\" assessed Failed")
    proc, calls = deploy("deploy", **CANARY, FAKE_ROLLOUT=aborted, FAKE_GOOD_SHA=deploy.good)
    assert proc.returncode == 1
    assert "assessed Failed" in proc.stderr and "the stable version keeps serving" in proc.stderr
    # Which versions it cannot tell (no model labels here): the alias is left, and the log says so.
    assert not any(c.startswith("modelship-models rollback") for c in calls)
    assert "cannot tell which version was rejected and which serves" in proc.stderr
    # No smoke test of a release that did not happen, nothing recorded, no second `up`.
    assert "PASSED" not in proc.stdout and "smoke test" not in proc.stderr
    assert not any("az storage blob" in c for c in calls)
    assert sum(c.startswith("pulumi up") for c in calls) == 1


def test_the_canary_command_alone_and_a_stack_without_a_rollout(deploy):
    proc, calls = deploy("canary", **CANARY, FAKE_ROLLOUT=_rollout(phase="Healthy", stableRS="new"))
    assert proc.returncode == 0, proc.stderr
    proc, calls = deploy("canary")  # no model deployed yet: nothing to wait for
    assert proc.returncode == 0 and "no canary to wait for" in proc.stderr
    assert not any(c.startswith("kubectl") for c in calls)


def test_prod_waits_for_its_own_canary_and_an_abort_fails_it(deploy):
    env = {"PULUMI_STACK": "prod", "RELEASE_DIGEST": DIGEST, "FAKE_OUT_release": RELEASE, **CANARY}
    proc, calls = deploy("deploy-prod", **env, FAKE_ROLLOUT=_rollout(phase="Healthy", stableRS="new"))
    assert proc.returncode == 0, proc.stderr
    up = _index(calls, "pulumi up --yes --non-interactive --policy-pack policy --policy-pack-config ")
    assert up < _index(calls, "kubectl get rollouts.argoproj.io model-server")
    assert "PASSED http://127.0.0.1" in proc.stdout
    proc, calls = deploy("deploy-prod", **env, FAKE_ROLLOUT=_rollout(phase="Degraded", abort=True))
    assert proc.returncode == 1 and "the stable version keeps serving" in proc.stderr
    assert "PASSED" not in proc.stdout


LABELS = {"modelship.io/model-name": "digits", "modelship.io/model-version": "1.3.0"}
SUMMARY = "fail: error_rate pass (0), p99_latency pass (0.02), prediction_drift fail (2.87)"


def _aborted_release() -> dict[str, str]:
    run_status = {"currentStepAnalysisRunStatus": {"name": "run-1", "status": "Failed"}}
    rollout = json.loads(_rollout(phase="Degraded", abort=True, stableRS="old", currentStepIndex=1,
                                  message="RolloutAborted: Metric \"canary-analysis\" assessed Failed",
                                  canary=run_status))
    rollout["metadata"]["namespace"] = "modelship"
    rollout["spec"]["template"] = {"metadata": {"labels": LABELS}}
    stable = {"items": [{"spec": {"template": {"metadata": {"labels": {
        **LABELS, "modelship.io/model-version": "1.2.0"}}}}}]}
    run = {"status": {"metricResults": [{"name": "canary-analysis", "phase": "Failed", "measurements": [
        {"phase": "Failed", "message": "job failed", "metadata": {"job-name": "uid.canary-analysis.1"}}]}]}}
    log = f'canary analysis: {SUMMARY}\n{{\n  "status": "fail"\n}}\n'
    return {**CANARY, "FAKE_ROLLOUT": json.dumps(rollout), "FAKE_RS": json.dumps(stable),
            "FAKE_RUN": json.dumps(run), "FAKE_LOG": log}


@pytest.mark.azurite
def test_an_aborted_canary_moves_the_alias_back_with_the_same_cli(deploy, azurite, tmp_path, monkeypatch):
    """Argo Rollouts aborted 1.3.0 while 1.2.0 kept serving: the `canary` step runs `modelship-models
    rollback` with the store the stack names, then fails the run. Its exact arguments, replayed with
    the real CLI against Azurite, move production back to 1.2.0 with the canary's record."""
    import uuid

    from modelstore.aliases import Aliases
    from modelstore.cli import main as models_cli
    from modelstore.store import ModelStore
    from tests.modelstore.conftest import write_model_dir

    proc, calls = deploy("canary", **_aborted_release())
    assert proc.returncode == 1, proc.stderr
    assert "the stable version keeps serving" in proc.stderr
    rollback = _index(calls, "modelship-models rollback")
    assert _index(calls, "kubectl get rollouts.argoproj.io") < rollback
    assert calls[rollback].endswith("url=https://modelshipmodels.blob.core.windows.net/ container=models")
    assert "move digits@production back from 1.3.0 to 1.2.0" in proc.stderr
    argv = (deploy.root.parent / "calls.log.rollback.args").read_bytes().decode().split("\0")[:-1]
    evidence = deploy.root.parent / "calls.log.evidence.json"
    argv[argv.index("--evidence") + 1] = str(evidence)
    assert argv[:6] == ["rollback", "--quiet", "digits@1.3.0", "--alias", "production", "--to"]

    container = f"p-{uuid.uuid4().hex[:16]}"
    store = ModelStore.from_connection_string(azurite.connection_string, container, progress=False)
    monkeypatch.delenv("MODELSHIP_STORE_URL", raising=False)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("MODELSHIP_STORE_CONTAINER", container)
    monkeypatch.setenv("MODELSHIP_PUBLISHER", "pipeline:test")
    for version in ("1.2.0", "1.3.0"):
        write_model_dir(tmp_path / "src" / version, "digits", version, f"model {version}".encode())
        store.publish(tmp_path / "src" / version)
        Aliases(store).move("digits", "production", version, f"promote {version}", forced=True)
    assert models_cli(argv) == 0
    back = Aliases(store).history("digits", "production")[-1]
    assert (back["from"], back["to"], back["kind"]) == ("1.3.0", "1.2.0", "rollback")
    assert back["who"].startswith("canary:argo-rollouts via ")
    assert back["why"].endswith(f"1.2.0 kept serving: {SUMMARY}")
    assert back["report"]["engine"] == "argo-rollouts" and back["report"]["analysis_run"] == "run-1"
    assert Aliases(store).get("digits", "production").rejected == ("1.3.0",)


def test_a_promoting_stack_moves_no_alias_after_an_abort(deploy):
    env = {"PULUMI_STACK": "prod", "RELEASE_DIGEST": DIGEST, "FAKE_OUT_release": RELEASE,
           "FAKE_CFG_promoteFrom": "organization/modelship/dev", **_aborted_release()}
    proc, calls = deploy("deploy-prod", **env)
    assert proc.returncode == 1
    assert "deploys another stack's verified release: no alias of its own to move back" in proc.stderr
    assert not any(c.startswith("modelship-models rollback") for c in calls)
