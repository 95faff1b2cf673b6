#!/usr/bin/env bash
# Make this machine able to run modelship locally: install what is missing and start Docker.
#
# Idempotent and quick when everything is present (a few checks, no network). On a fresh Debian
# bookworm machine, as root, it installs Debian's docker.io, docker-registry, debootstrap, graphviz,
# haproxy and wrk (one `apt-get update`), Azurite from npm into .local/azurite, cdxgen from npm into
# .local/cdxgen (pinned by tools/cdxgen/package-lock.json), the Python environment
# (.venv from the pinned requirements-dev.txt plus this project in editable mode), and starts
# dockerd if no Docker Engine answers. A dockerd started here is recorded in .local/run/dockerd.pid
# so that `make down` stops it and only it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="${MODELSHIP_STATE_DIR:-$ROOT/.local}"
AZ_DIR="${MODELSHIP_AZURITE_DIR:-$ROOT/.local/azurite}"
DOCKER="${DOCKER:-/usr/bin/docker}"
AZURITE_VERSION="3.37.0"
VENV="$ROOT/.venv"
mkdir -p "$LOCAL/logs" "$LOCAL/run"

log() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] ERROR: %s\n' "$*" >&2; exit 1; }

# Root here; elsewhere (hosted CI agents) through passwordless sudo for apt-get and dockerd.
SUDO=""
if [ "$(id -u)" != 0 ]; then
  sudo -n true 2>/dev/null || die "run as root, or as a user with passwordless sudo (installs Debian packages, starts dockerd)"
  SUDO="sudo -n"
fi

# --- Debian packages: install only the missing ones, with a single apt-get update -------------
missing=()
[ -x /usr/sbin/dockerd ] && [ -x "$DOCKER" ] || missing+=(docker.io)
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v dot >/dev/null || missing+=(graphviz)
command -v wrk >/dev/null || missing+=(wrk)
[ -x /usr/sbin/haproxy ] || missing+=(haproxy)  # the local front door (delivery/frontdoor.py)
command -v git >/dev/null || missing+=(git)
command -v curl >/dev/null || missing+=(curl)
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)  # git and curl over https
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v npm >/dev/null || missing+=(npm)
[ -x /usr/bin/prometheus ] || missing+=(prometheus)  # the canary analysis' metrics (delivery/prometheus.py)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    > "$LOCAL/logs/apt.log" 2>&1 || { tail -20 "$LOCAL/logs/apt.log" >&2; die "apt-get install failed (log: $LOCAL/logs/apt.log)"; }
else
  log "Debian packages present"
fi

# --- Docker Engine: use a running one, else start dockerd in the background ------------------
if "$DOCKER" info >/dev/null 2>&1; then
  log "Docker Engine is running"
else
  log "starting dockerd (log: $LOCAL/logs/dockerd.log)"
  $SUDO nohup /usr/sbin/dockerd > "$LOCAL/logs/dockerd.log" 2>&1 &
  echo $! > "$LOCAL/run/dockerd.pid"
  for _ in $(seq 1 60); do
    "$DOCKER" info >/dev/null 2>&1 && break
    # /proc, not kill -0: through sudo the recorded pid is root's, and kill -0 on it is EPERM.
    [ -d "/proc/$(cat "$LOCAL/run/dockerd.pid")" ] || { tail -20 "$LOCAL/logs/dockerd.log" >&2; die "dockerd exited"; }
    sleep 1
  done
  "$DOCKER" info >/dev/null 2>&1 || die "dockerd did not answer within 60 s (log: $LOCAL/logs/dockerd.log)"
  log "dockerd is up (pid $(cat "$LOCAL/run/dockerd.pid"))"
fi

# --- Azurite (Blob Storage emulator) from npm, pinned ----------------------------------------
AZ_BIN="$AZ_DIR/node_modules/.bin/azurite-blob"
if [ -x "$AZ_BIN" ] && grep -q "\"version\": \"$AZURITE_VERSION\"" "$AZ_DIR/node_modules/azurite/package.json" 2>/dev/null; then
  log "Azurite $AZURITE_VERSION present"
else
  log "installing Azurite $AZURITE_VERSION with npm into $AZ_DIR"
  mkdir -p "$AZ_DIR"
  npm install --prefix "$AZ_DIR" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" \
    > "$LOCAL/logs/npm.log" 2>&1 || { tail -20 "$LOCAL/logs/npm.log" >&2; die "npm install azurite failed"; }
fi

# --- cdxgen (the SBOM's Debian packages) from npm, pinned by tools/cdxgen/package-lock.json --
bash "$ROOT/scripts/install-cdxgen.sh" | sed 's/^\[cdxgen\]/[bootstrap]/'

# --- Python environment: .venv from the pinned requirements, re-synced when they change -----
REQS="$ROOT/requirements-dev.txt"
STAMP="$VENV/.modelship-requirements.sha256"
want="none"
[ -f "$REQS" ] && want="$(sha256sum "$REQS" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
  log "Python environment up to date ($VENV)"
else
  [ -x "$VENV/bin/python" ] || { log "creating $VENV"; python3 -m venv "$VENV"; }
  if [ -f "$REQS" ]; then
    total="$(grep -cE '^[A-Za-z0-9]' "$REQS" || true)"
    log "installing $total pinned Python packages (and their pins) from requirements-dev.txt, a few minutes (log: $LOCAL/logs/pip.log)"
    "$VENV/bin/pip" install --progress-bar off -r "$REQS" > "$LOCAL/logs/pip.log" 2>&1 &
    pip_pid=$!
    # One progress line every 15 s: how many packages pip has fetched so far.
    while kill -0 "$pip_pid" 2>/dev/null; do
      for _ in $(seq 1 15); do kill -0 "$pip_pid" 2>/dev/null || break; sleep 1; done
      kill -0 "$pip_pid" 2>/dev/null && log "  pip: $(grep -c '^Collecting' "$LOCAL/logs/pip.log" || true) packages fetched so far"
    done
    wait "$pip_pid" || { tail -20 "$LOCAL/logs/pip.log" >&2; die "pip install -r requirements-dev.txt failed"; }
    log "  pip: $(grep -c '^Collecting' "$LOCAL/logs/pip.log" || true) packages installed"
  else
    log "WARNING: no requirements-dev.txt; using the packages already in $VENV"
  fi
  "$VENV/bin/pip" install -q --no-deps -e "$ROOT" >> "$LOCAL/logs/pip.log" 2>&1 \
    || { tail -20 "$LOCAL/logs/pip.log" >&2; die "pip install -e . failed"; }
  echo "$want" > "$STAMP"
fi
# The server (app/modelserver) is not part of the library (pyproject.toml): it ships in the image. The
# checkout's tools (delivery runs the canary analysis in process) import it from app/, as pytest does.
echo "$ROOT/app" > "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/modelship-app.pth"
# --- Model signing key: generated once, outside the repository (~/.config/modelship, 0600) -----
"$VENV/bin/python" -m modelstore.signing keygen | sed 's/^/[bootstrap] /' \
  || die "could not create the model signing key (python -m modelstore.signing keygen)"
# --- Wheelhouse: image builds install app/requirements.txt from app/wheels with --no-index -----
# (containers here cannot verify PyPI's TLS; with the wheels the build needs no network at all)
(cd "$ROOT" && "$VENV/bin/python" -c 'from delivery.build import ensure_wheelhouse; from delivery.settings import ROOT; ensure_wheelhouse(ROOT / "app")') \
  || die "could not fill app/wheels (scripts/build-wheelhouse.sh)"
log "wheelhouse app/wheels complete"
log "ready"
