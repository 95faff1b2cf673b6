#!/usr/bin/env bash
# Install cdxgen (the SBOM's Debian packages, delivery/sbom_os.py) from npm, exactly as
# tools/cdxgen/package-lock.json pins it, into ${MODELSHIP_CDXGEN_DIR:-.local/cdxgen}; nothing to do
# when that lock is already installed there. Run by scripts/bootstrap.sh (local) and by
# scripts/cloud-deploy.sh's prepare-push (the pipeline agent that runs the SBOM step of `pulumi up`).
#
# `npm install --omit=optional --no-save` from the lock, not `npm ci`: cdxgen's optional safer-exec
# names macOS builds that the registry does not serve, and `npm ci` refuses such a lock. About 200 MB,
# under 10 s. Needs Node.js 20 or newer.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOGS="${MODELSHIP_STATE_DIR:-$ROOT/.local}/logs"
CDX_DIR="${MODELSHIP_CDXGEN_DIR:-$ROOT/.local/cdxgen}"
LOCK="$ROOT/tools/cdxgen/package-lock.json"
STAMP="$CDX_DIR/.modelship-lock.sha256"
log() { printf '[cdxgen] %s\n' "$*"; }
die() { printf '[cdxgen] ERROR: %s\n' "$*" >&2; exit 1; }

want="$(sha256sum "$LOCK" | cut -d' ' -f1)"
if [ -x "$CDX_DIR/node_modules/.bin/cdxgen" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
  log "cdxgen present ($CDX_DIR)"
  exit 0
fi
command -v npm >/dev/null || die "npm is not installed (cdxgen comes from the npm registry)"
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
[ "$node_major" -ge 20 ] || die "cdxgen needs Node.js 20 or newer; node is $(node --version 2>/dev/null || echo missing)"
mkdir -p "$CDX_DIR" "$LOGS"
log "installing cdxgen with npm into $CDX_DIR from tools/cdxgen/package-lock.json (log: $LOGS/npm-cdxgen.log)"
cp "$ROOT/tools/cdxgen/package.json" "$LOCK" "$CDX_DIR/"
(cd "$CDX_DIR" && npm install --omit=optional --no-save --no-audit --no-fund --loglevel=error) \
  > "$LOGS/npm-cdxgen.log" 2>&1 || { tail -20 "$LOGS/npm-cdxgen.log" >&2; die "npm install of cdxgen failed (log: $LOGS/npm-cdxgen.log)"; }
cmp -s "$LOCK" "$CDX_DIR/package-lock.json" \
  || die "npm changed the lock in $CDX_DIR: tools/cdxgen/package-lock.json does not match its package.json"
[ -x "$CDX_DIR/node_modules/.bin/cdxgen" ] || die "npm installed no cdxgen into $CDX_DIR"
echo "$want" > "$STAMP"
