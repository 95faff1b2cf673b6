#!/usr/bin/env bash
# Build a minimal Debian bookworm + Python 3.11 base image with debootstrap and `docker import`,
# for machines that cannot pull python:3.11-slim. Idempotent: does nothing if the tag exists.
set -euo pipefail
TAG="${1:-modelship/python-base:3.11-bookworm}"
DOCKER="${DOCKER:-/usr/bin/docker}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG already present"
  exit 0
fi
command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }
ROOTFS="$(mktemp -d /tmp/modelship-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT
echo "debootstrap bookworm into $ROOTFS (a few minutes)..."
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$ROOTFS" "$MIRROR"
# Keep the image small: no apt lists, caches, docs or man pages.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/usr/share/doc/* \
       "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/locale/* "$ROOTFS"/var/log/*
echo "importing as $TAG..."
tar -C "$ROOTFS" -c . | "$DOCKER" import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
  -c 'CMD ["python3"]' - "$TAG"
"$DOCKER" run --rm "$TAG" python3 -c 'import sys, venv; print("base ok", sys.version.split()[0])'
