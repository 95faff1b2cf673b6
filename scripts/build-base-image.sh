#!/usr/bin/env bash
# Build a minimal Debian bookworm + Python 3.11 base image with debootstrap and `docker import`,
# the default base of the image everywhere (Docker Hub cannot be assumed reachable). Idempotent: does
# nothing if the tag exists. Used by `make up` and by the tests' session fixture (delivery/baseimage.py).
set -euo pipefail
TAG="${1:-modelship/python-base:3.11-bookworm-2}"
DOCKER="${DOCKER:-/usr/bin/docker}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# One build at a time on this machine (parallel test runs and `make up` share the tag): the
# second waits for the first, then finds the image.
exec 9>"${TMPDIR:-/tmp}/modelship-base-image.lock"
flock 9
if "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG already present"
  exit 0
fi
command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }
ROOTFS="$(mktemp -d /tmp/modelship-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT
echo "debootstrap bookworm into $ROOTFS (a few minutes)..."
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOTFS" "$MIRROR"
# Keep the image small: no apt lists, caches, docs or man pages. Each package's copyright file stays
# (about 2.5 MB): it states the package's licence, which the SBOM's Debian part reads from it.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* \
       "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/* "$ROOTFS"/var/log/*
find "$ROOTFS"/usr/share/doc -mindepth 1 -type f ! -name copyright -delete
find "$ROOTFS"/usr/share/doc -mindepth 1 -type d -empty -delete
echo "importing as $TAG..."
tar -C "$ROOTFS" -c . | "$DOCKER" import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
  -c 'CMD ["python3"]' - "$TAG"
"$DOCKER" run --rm "$TAG" python3 -c 'import sys, venv; print("base ok", sys.version.split()[0])'
