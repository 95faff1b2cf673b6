#!/usr/bin/env bash
# Fill app/wheels/ with binary wheels for app/requirements.txt (Python 3.11, this machine's arch),
# so that image builds need no network: the Dockerfile installs from there with --no-index.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PIP="${PIP:-$ROOT/.venv/bin/pip}"
[ -x "$PIP" ] || PIP="python3 -m pip"
case "$(uname -m)" in
  x86_64) PLATFORM=manylinux2014_x86_64 ;;
  aarch64|arm64) PLATFORM=manylinux2014_aarch64 ;;
  *) echo "build-wheelhouse: unsupported architecture $(uname -m)" >&2; exit 2 ;;
esac
DEST="$ROOT/app/wheels"
mkdir -p "$DEST"
echo "downloading wheels for app/requirements.txt ($PLATFORM, cp311) into app/wheels/ ..."
# Newer manylinux tags (2_27, 2_28) are accepted alongside manylinux2014.
$PIP download --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
  --platform "$PLATFORM" --platform "${PLATFORM/manylinux2014/manylinux_2_28}" \
  --platform "${PLATFORM/manylinux2014/manylinux_2_27}" --platform "${PLATFORM/manylinux2014/manylinux_2_17}" \
  --dest "$DEST" -r "$ROOT/app/requirements.txt" --no-deps -q
echo "app/wheels/: $(ls "$DEST"/*.whl | wc -l) wheels"
