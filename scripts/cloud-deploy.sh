#!/usr/bin/env bash
# The cloud delivery steps shared by azure-pipelines.yml and .github/workflows/delivery.yml.
#
#   scripts/cloud-deploy.sh preview    fetch the model, pulumi preview with the policy pack (pull
#                                      requests): the preview shows the real diff of the service
#   scripts/cloud-deploy.sh deploy     fetch the model, buildx builder + ACR login, pulumi up with the
#                                      policy pack, wait for the canary, smoke test; a failed canary
#                                      fails the run (Argo Rollouts has aborted it: the stable version
#                                      keeps serving); a failed smoke test rolls back to the last good
#                                      revision
#   scripts/cloud-deploy.sh rollback   redeploy the last good revision (also run by hand)
#   scripts/cloud-deploy.sh promote-candidate
#                                      with MODEL_CANDIDATE=name@version: evaluate it against the alias
#                                      on the golden data set, then promote it (the gate refuses a
#                                      worse model: exit 7 fails the run before anything is deployed);
#                                      `deploy` runs it first when MODEL_CANDIDATE is set
#   scripts/cloud-deploy.sh doctor [preview|up]
#                                      modelship-doctor: the prerequisites, each failure with its fix
#   scripts/cloud-deploy.sh canary     wait until Argo Rollouts promotes the release (every step's
#                                      analysis passed) or aborts it (exit non-zero; then the alias the
#                                      stack deploys moves back to the version that kept serving)
#   scripts/cloud-deploy.sh fetch-model | prepare-push | smoke | record-good
#                                      the single steps, for pipelines that run `pulumi up` themselves
#   scripts/cloud-deploy.sh release    print the digest the stack's container test verified and runs
#                                      (its `release` output); the dev job hands it to the prod job
#   scripts/cloud-deploy.sh deploy-prod
#                                      with RELEASE_DIGEST (from `release`) and PULUMI_STACK=prod: read
#                                      dev's release (DEV_STACK, default dev), refuse unless it is that
#                                      digest, set it as prod's `release` config, pulumi up with the
#                                      policy pack configured to allow only that digest, the canary,
#                                      smoke test; a failed smoke test rolls back (rollback-prod).
#                                      Nothing is built or fetched: prod imports dev's digest.
#   scripts/cloud-deploy.sh rollback-prod
#                                      with PULUMI_STACK=prod: redeploy the release prod ran before
#                                      its last promotion (its previousRelease output), canary, smoke
#
# Every command first checks that the stack's secrets provider can be used without a prompt
# (Pulumi.<stack>.yaml names a cloud secretsprovider, or PULUMI_CONFIG_PASSPHRASE[_FILE] is set).
#
# Runs where Azure is already signed in (AzureCLI@2 / azure/login with workload identity) and the
# ARM_* variables for Pulumi's azure-native provider are set. No secret is read from a file.
#
# Environment:
#   PULUMI_STACK         stack to use (required), e.g. dev
#   PULUMI_BACKEND_URL   state backend, e.g. azblob://pulumi-state?storage_account=modelshipstate
#                        (empty: the CLI's current login, e.g. Pulumi Cloud)
#   PYTHON               interpreter with the project installed (default: python)
#   SMOKE_TIMEOUT        seconds to wait for the endpoint to be ready (default: 300)
#   CANARY_TIMEOUT       seconds the canary may take (default: from the analysis definition)
#   MODELSHIP_ROLLBACK   0 disables the automatic rollback after a failed smoke test (default: 1)
#   MODEL_CANDIDATE      name@version to evaluate and promote before deploying (default: none)
#   GOLDEN_DATASET       golden data set of the evaluation (default: digits-golden@1)
#   RELEASE_DIGEST       deploy-prod: the sha256:... digest this run verified in dev (required)
#   DEV_STACK            deploy-prod: the stack whose release prod deploys (default: dev)
set -euo pipefail

cmd="${1:-}"
PYTHON="${PYTHON:-python}"
SMOKE_TIMEOUT="${SMOKE_TIMEOUT:-300}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GOOD_MARK="modelship-last-good"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'cloud-deploy: error: %s\n' "$*" >&2; exit 1; }

[ -n "${PULUMI_STACK:-}" ] || die "PULUMI_STACK is not set (the stack to deploy, e.g. dev)"
command -v pulumi >/dev/null || die "the pulumi CLI is not on PATH"

secrets_provider() {  # the secretsprovider a non-interactive run will use, or a clear failure
  local file="$ROOT/Pulumi.$PULUMI_STACK.yaml" provider
  provider="$(sed -n 's/^secretsprovider:[[:space:]]*//p' "$file" 2>/dev/null | tr -d "\"'" || true)"
  case "$provider" in
    azurekeyvault://*|awskms://*|gcpkms://*|hashivault://*) return 0 ;;
  esac
  if [ -n "${PULUMI_CONFIG_PASSPHRASE:-}${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then return 0; fi
  if [ -z "$provider" ] && [ -z "${PULUMI_BACKEND_URL:-}" ]; then return 0; fi  # Pulumi Cloud: its own keys
  die "stack $PULUMI_STACK: Pulumi.$PULUMI_STACK.yaml names no cloud secretsprovider (got '${provider:-none}'), so pulumi would ask for a passphrase; run: pulumi stack change-secrets-provider --stack $PULUMI_STACK 'azurekeyvault://<vault>.vault.azure.net/keys/<key>' (docs/pipelines.md)"
}

login() {
  secrets_provider
  if [ -n "${PULUMI_BACKEND_URL:-}" ]; then
    say "pulumi login ${PULUMI_BACKEND_URL%%\?*}"
    pulumi login --non-interactive "$PULUMI_BACKEND_URL" >/dev/null
  fi
  pulumi stack select --non-interactive "$PULUMI_STACK"
}

policy_venv() {
  # The policy pack runs in its own virtualenv (PulumiPolicy.yaml: virtualenv: venv).
  local dir="$1/policy"
  if [ ! -x "$dir/venv/bin/python" ]; then
    say "policy pack virtualenv"
    "$PYTHON" -m venv "$dir/venv"
    "$dir/venv/bin/pip" install --quiet --disable-pip-version-check -r "$dir/requirements.txt"
  fi
}

output() {  # a stack output, or a clear failure naming it
  pulumi stack output "$1" 2>/dev/null || die "stack $PULUMI_STACK has no output '$1' (deploy the stack once, see docs/pipelines.md)"
}

config() { pulumi config get "$1" 2>/dev/null || echo "$2"; }

fetch_model() {  # into $1/app/model: the model named by the stack config (modelName@modelVersion)
  local dir="$1" ref store
  ref="$(config modelName digits)@$(config modelVersion production)"
  if ! store="$(pulumi stack output blobEndpoint 2>/dev/null)" || [ -z "$store" ]; then
    say "stack $PULUMI_STACK has no model store yet: this first 'pulumi up' creates it (no model is deployed)"
    say "then publish a model (modelship-models publish) and run the pipeline again"
    return 0
  fi
  say "pull model $ref"
  rm -rf "${dir:?}/app/model"
  MODELSHIP_STORE_URL="$store" MODELSHIP_STORE_CONTAINER="$(output modelContainer)" \
    modelship-models fetch --quiet "$ref" "$dir/app/model"
}

acr_login() {  # ModelImage pushes with this host's Docker credentials: the pipeline identity's ACR token
  local registry
  registry="$(config registryName "")"
  [ -n "$registry" ] || die "stack $PULUMI_STACK sets no registryName"
  if az acr show --name "$registry" --output none 2>/dev/null; then
    say "az acr login --name $registry (identity token, no admin user)"
    az acr login --name "$registry" --output none
  else
    say "registry $registry does not exist yet: this 'pulumi up' creates it (and no image is pushed without a model)"
  fi
}

ensure_builder() {  # the buildx builder ModelImage builds with: the docker driver refuses cache export
  local builder
  builder="$(config imageBuilder modelship)"
  if docker buildx inspect "$builder" >/dev/null 2>&1; then
    return 0
  fi
  say "docker buildx create --name $builder --driver docker-container (registry build cache)"
  docker buildx create --name "$builder" --driver docker-container --bootstrap >/dev/null
}

doctor() {  # modelship-doctor: every prerequisite checked, each failure with its fix (docs/azure.md)
  say "modelship-doctor --stack $PULUMI_STACK --for $1"
  (cd "$ROOT" && "$PYTHON" -m preflight --stack "$PULUMI_STACK" --for "$1" --project "$ROOT")
}

prepare_push() {  # everything the image push of `pulumi up` needs on this host
  ensure_builder
  acr_login
  # The SBOM step (ImageSbom) lists the image's Debian packages with cdxgen, pinned by the lock.
  export MODELSHIP_CDXGEN_DIR="${MODELSHIP_CDXGEN_DIR:-$ROOT/.local/cdxgen}"
  bash "$ROOT/scripts/install-cdxgen.sh" || die "could not install cdxgen for the SBOM step"
}

smoke() {  # the stack's url must serve exactly the model@version the stack says it deployed
  local url model wanted
  if ! url="$(pulumi stack output url 2>/dev/null)" || [ -z "$url" ]; then
    die "stack $PULUMI_STACK serves no model: $(pulumi stack output modelStatus 2>/dev/null || echo 'no url output')"
  fi
  model="$(output model)"                       # name@version baked into the deployed image
  wanted="$(config modelVersion production)"
  # 'latest' and an alias (production) name whatever the fetch resolved; a version must match.
  if [ "$wanted" != latest ] && ! is_alias "$wanted" && [ "${model#*@}" != "$wanted" ]; then
    die "the stack deployed $model but config modelVersion is $wanted"
  fi
  say "smoke test $model at $url"
  (cd "$ROOT" && "$PYTHON" -m delivery.smoke --url "$url" --model "${model%@*}" \
    --expect-version "${model#*@}" --timeout "$SMOKE_TIMEOUT" --interval 5) || return 1
  # What runs: the digest its container test verified, who signed its model (the server checked
  # the signature when that test started it) and its SBOM beside it in ACR (ImageSbom).
  say "running $(pulumi stack output verifiedDigest 2>/dev/null || echo 'an unknown digest'), model signed by $(pulumi stack output modelSigner 2>/dev/null || echo unknown), SBOM $(pulumi stack output sbomDigest 2>/dev/null || echo 'none recorded') (python -m delivery.sbom pull --image <ref> --acr <registry>)"
}

canary() {  # wait for Argo Rollouts: every canary step's analysis passed (promoted), or it aborted
  local name ns kubeconfig report code=0
  if ! name="$(pulumi stack output rolloutName 2>/dev/null)" || [ -z "$name" ]; then
    say "stack $PULUMI_STACK runs no Rollout yet (no model deployed): no canary to wait for"
    return 0
  fi
  ns="$(output namespace)"
  kubeconfig="$(mktemp)"
  chmod 600 "$kubeconfig"
  pulumi stack output kubeconfig --show-secrets >"$kubeconfig"  # kubelogin: the signed-in identity, no secret
  report="$(mktemp)"
  say "canary: Argo Rollouts runs rollout/$name's steps and analyses in $ns"
  # From this script's checkout, also when the rollback runs an older revision's program.
  (cd "$ROOT" && KUBECONFIG="$kubeconfig" "$PYTHON" -m delivery.argo_status --namespace "$ns" \
    --rollout "$name" --abort-report "$report" ${CANARY_TIMEOUT:+--timeout "$CANARY_TIMEOUT"}) || code=$?
  rm -f "$kubeconfig"
  if [ "$code" = 1 ]; then  # aborted: the alias that released the rejected version must not name it
    alias_back "$report"
  fi
  rm -f "$report"
  return "$code"
}

alias_back() {  # after an aborted canary: move the alias back to the version that kept serving
  local report="$1" alias fields model rejected serving
  alias="$(config modelVersion production)"
  if [ -n "$(config promoteFrom "")" ]; then
    say "$PULUMI_STACK deploys another stack's verified release: no alias of its own to move back"
    return 0
  fi
  if ! is_alias "$alias"; then
    say "config modelVersion is $alias, not an alias: no alias to move back"
    return 0
  fi
  fields="$("$PYTHON" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(" ".join(str(r.get(k) or "-") for k in ("model", "rejected", "serving")))' "$report" 2>/dev/null || echo "- - -")"
  read -r model rejected serving <<<"$fields"
  [ "$model" != - ] || model="$(config modelName digits)"
  if [ "$rejected" = - ] || [ "$serving" = - ]; then
    say "cannot tell which version was rejected and which serves ($report): move $model@$alias back by hand (docs/release.md)"
    return 0
  fi
  say "move $model@$alias back from $rejected to $serving, the version that kept serving"
  MODELSHIP_STORE_URL="$(output blobEndpoint)" MODELSHIP_STORE_CONTAINER="$(output modelContainer)" \
    modelship-models rollback --quiet "$model@$rejected" --alias "$alias" --to "$serving" \
    --by canary:argo-rollouts --evidence "$report" \
    --reason "$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["reason"])' "$report")" \
    || say "could not move $model@$alias back: move it by hand (docs/release.md, rolling back by hand)"
}

is_alias() { [[ "$1" =~ ^[a-z][a-z0-9-]{0,62}$ && "$1" != latest ]]; }  # modelship_contract.manifest.ALIAS_RE

promote_candidate() {  # evaluate MODEL_CANDIDATE against the stack's alias, then promote it
  local candidate="${MODEL_CANDIDATE:-}" alias store container current against=()
  [ -n "$candidate" ] || return 0
  alias="$(config releaseAlias production)"
  store="$(output blobEndpoint)"; container="$(output modelContainer)"
  export MODELSHIP_STORE_URL="$store" MODELSHIP_STORE_CONTAINER="$container"
  current="$(modelship-models aliases "${candidate%@*}" --json | "$PYTHON" -c \
    'import json,sys; print(next((a["version"] for a in json.load(sys.stdin) if a["alias"] == sys.argv[1]), ""))' "$alias")"
  if [ "$current" = "${candidate#*@}" ]; then
    say "${candidate%@*}@$alias already names ${candidate#*@}: nothing to promote"
    return 0
  fi
  [ -z "$current" ] || against=(--against "$alias")
  say "evaluate $candidate ${against[*]:-(new alias)} on ${GOLDEN_DATASET:-digits-golden@1}"
  modelship-models evaluate --quiet "$candidate" "${against[@]}" --dataset "${GOLDEN_DATASET:-digits-golden@1}"
  say "promote $candidate to $alias"
  modelship-models promote --quiet "$candidate" --alias "$alias" \
    --reason "pipeline ${BUILD_BUILDID:-${GITHUB_RUN_ID:-local}}: passed the evaluation gate"
}

mark_blob() {  # az storage blob <verb> on the state container's "last good" marker
  local url="${PULUMI_BACKEND_URL:-}" account container verb="$1"; shift
  case "$url" in azblob://*) ;; *) return 3 ;; esac
  account="$(sed -n 's/.*[?&]storage_account=\([^&]*\).*/\1/p' <<<"$url")"
  container="${url#azblob://}"; container="${container%%[/?]*}"
  [ -n "$account" ] || return 3
  az storage blob "$verb" --auth-mode login --only-show-errors --account-name "$account" \
    --container-name "$container" --name "$GOOD_MARK/$PULUMI_STACK" "$@"
}

record_good() {
  local sha; sha="$(git -C "$ROOT" rev-parse HEAD)"
  if mark_blob upload --overwrite --data "$sha" >/dev/null; then
    say "recorded $sha as the last good revision of $PULUMI_STACK"
  else
    say "warning: could not record the last good revision (backend is not azblob?)"
  fi
}

rollback() {
  local sha tmp file
  file="$(mktemp)"
  mark_blob download --file "$file" >/dev/null 2>&1 || die "no last good revision recorded for $PULUMI_STACK: nothing to roll back to"
  sha="$(tr -d '[:space:]' <"$file")"; rm -f "$file"
  [[ "$sha" =~ ^[0-9a-f]{40}$ ]] || die "the recorded last good revision is not a git sha: '$sha'"
  [ "$sha" != "$(git -C "$ROOT" rev-parse HEAD)" ] || die "the failing revision is the last good one: roll forward instead"
  say "roll back $PULUMI_STACK to $sha"
  tmp="$(mktemp -d)"
  git -C "$ROOT" worktree add --detach "$tmp/src" "$sha" >/dev/null
  (
    cd "$tmp/src"
    pulumi stack select --non-interactive "$PULUMI_STACK"  # the selection is per project directory
    # That revision's own environment: Pulumi.yaml runs the program from <project>/.venv.
    "$PYTHON" -m venv .venv
    reqs=(); [ -f requirements-dev.txt ] && reqs=(-r requirements-dev.txt)
    .venv/bin/pip install --quiet --disable-pip-version-check "${reqs[@]}" -e .
    export PATH="$PWD/.venv/bin:$PATH"
    policy_venv "$tmp/src"
    fetch_model "$tmp/src"
    prepare_push
    pulumi up --yes --non-interactive --policy-pack policy --message "rollback to $sha"
    canary || die "the rollback's canary did not pass: see docs/release.md (roll back by hand)"
    ROOT="$tmp/src" smoke
  )
  git -C "$ROOT" worktree remove --force "$tmp/src"
  rm -rf "$tmp"
  say "rolled back: $PULUMI_STACK serves revision $sha again"
}

release_digest() {  # the digest this stack's container test verified and runs (its release output)
  local release
  release="$(pulumi stack output release --json 2>/dev/null)" || die "stack $PULUMI_STACK has no release output: no image has passed its container test there"
  "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["digest"])' <<<"$release"
}

prod_up() {  # pulumi up of a promoting stack: release $1 (JSON) as its config, only digest $2 allowed
  local policy
  pulumi config set release "$1"
  # CrossGuard's prod rule (policy/rules.py) allows exactly that digest.
  policy="$(mktemp)"
  "$PYTHON" -c 'import json,sys; print(json.dumps({"prod-only-dev-verified-digests": {"stage": "prod", "verifiedDigests": [sys.argv[1]]}}))' "$2" >"$policy"
  doctor up
  say "pulumi up"
  pulumi up --yes --non-interactive --policy-pack policy --policy-pack-config "$policy" --message "$3"
  rm -f "$policy"
}

deploy_prod() {  # prod never builds: it deploys the release dev verified, by digest
  local dev="${DEV_STACK:-dev}" release digest
  [ -n "${RELEASE_DIGEST:-}" ] || die "RELEASE_DIGEST is not set (the digest dev verified in this run: scripts/cloud-deploy.sh release)"
  [[ "$RELEASE_DIGEST" =~ ^sha256:[0-9a-f]{64}$ ]] || die "RELEASE_DIGEST '$RELEASE_DIGEST' is not a sha256 digest"
  release="$(pulumi stack output release --json --stack "$dev" 2>/dev/null)" || die "stack $dev has no release output: deploy dev first"
  release="$("$PYTHON" -c 'import json,sys; print(json.dumps(json.load(sys.stdin), separators=(",", ":")))' <<<"$release")"
  digest="$("$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["digest"])' <<<"$release")"
  # The approval was for this run's digest; if dev has moved on since, this run promotes nothing.
  [ "$digest" = "$RELEASE_DIGEST" ] || die "stack $dev now runs $digest, not $RELEASE_DIGEST that this run verified: nothing promoted; the run that deployed $digest promotes it"
  say "promote $digest from $dev to $PULUMI_STACK (no build: az acr import by digest)"
  prod_up "$release" "$digest" "promote $digest from $dev"
  canary || die "the canary did not pass in $PULUMI_STACK (aborted, or not finished in time): the stable version keeps serving"
  if smoke; then
    say "$PULUMI_STACK serves $digest"
  else
    say "smoke test FAILED in $PULUMI_STACK"
    if [ "${MODELSHIP_ROLLBACK:-1}" != 0 ]; then
      # A child process, so that `set -e` holds inside the rollback (it does not under `||`).
      bash "$ROOT/scripts/cloud-deploy.sh" rollback-prod || say "ROLLBACK FAILED: see docs/pipelines.md (manual rollback)"
    fi
    die "$PULUMI_STACK failed its smoke test with $digest"
  fi
}

rollback_prod() {  # back to the release prod ran before its last promotion (its previousRelease output)
  local previous digest
  previous="$(pulumi stack output previousRelease --json 2>/dev/null)" || previous=null
  previous="$("$PYTHON" -c 'import json,sys; v=json.load(sys.stdin); print(json.dumps(v, separators=(",", ":")) if v else "")' <<<"${previous:-null}")"
  [ -n "$previous" ] || die "$PULUMI_STACK has no previous release (its first promotion, or already rolled back): nothing to roll back to"
  digest="$("$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["digest"])' <<<"$previous")"
  say "roll back $PULUMI_STACK to $digest"
  # The program accepts it only as this stack's own previousRelease (components/promotion.py).
  prod_up "$previous" "$digest" "rollback to $digest"
  canary || die "the rollback's canary did not pass: see docs/release.md (roll back by hand)"
  smoke
  say "rolled back: $PULUMI_STACK serves $digest again"
}

cd "$ROOT"
case "$cmd" in
  preview)
    login
    policy_venv "$ROOT"
    # Without the model the preview would show the image and the service being deleted, and the
    # Kubernetes policy rules would not run.
    fetch_model "$ROOT"
    doctor preview
    pulumi preview --non-interactive --diff --policy-pack policy
    ;;
  deploy)
    login
    policy_venv "$ROOT"
    promote_candidate
    fetch_model "$ROOT"
    prepare_push
    doctor up
    say "pulumi up"
    pulumi up --yes --non-interactive --policy-pack policy
    # Argo Rollouts aborts a canary whose analysis fails and keeps the stable version serving; the
    # alias moves back to that version (canary), and the run fails, with nothing recorded or rolled back.
    canary || die "the canary did not pass (aborted, or not finished in time): the stable version keeps serving"
    if smoke; then
      record_good
    else
      say "smoke test FAILED"
      if [ "${MODELSHIP_ROLLBACK:-1}" != 0 ]; then
        # A child process, so that `set -e` holds inside the rollback (it does not under `||`).
        bash "$ROOT/scripts/cloud-deploy.sh" rollback || say "ROLLBACK FAILED: see docs/pipelines.md (manual rollback)"
      fi
      die "deploy failed its smoke test"
    fi
    ;;
  rollback)
    login
    rollback
    ;;
  rollback-prod)
    login
    policy_venv "$ROOT"
    rollback_prod
    ;;
  fetch-model)
    login
    fetch_model "$ROOT"
    ;;
  promote-candidate)
    login
    promote_candidate
    ;;
  prepare-push)
    login
    prepare_push
    ;;
  doctor)
    doctor "${2:-up}"
    ;;
  canary)
    login
    canary
    ;;
  smoke)
    login
    smoke
    ;;
  record-good)
    login
    record_good
    ;;
  release)
    login >&2
    release_digest
    ;;
  deploy-prod)
    login
    policy_venv "$ROOT"
    deploy_prod
    ;;
  *)
    die "unknown command '${cmd}': use preview, deploy, rollback, rollback-prod, doctor, fetch-model, promote-candidate, prepare-push, canary, smoke, record-good, release or deploy-prod"
    ;;
esac
