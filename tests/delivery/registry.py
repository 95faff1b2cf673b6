"""Test helper: read an image's layers back from a registry (the tests check what a cluster would pull)."""

from __future__ import annotations

import json
import urllib.request

_MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
])


def registry_layers(registry: str, repository: str, reference: str) -> list[tuple[str, str]]:
    """``(created_by, blob digest)`` for each layer of an image in a registry, base first.

    Read from the registry itself (manifest + config), so the digests are the ones a cluster
    pulls. Config history entries marked ``empty_layer`` (ENV, LABEL, ...) have no blob.
    """

    def get(path: str, accept: str) -> dict:
        req = urllib.request.Request(f"http://{registry}/v2/{repository}/{path}", headers={"Accept": accept})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    manifest = get(f"manifests/{reference}", _MANIFEST_TYPES)
    config = get(f"blobs/{manifest['config']['digest']}", "application/json")
    steps = [h.get("created_by", "") for h in config.get("history", []) if not h.get("empty_layer")]
    layers = [layer["digest"] for layer in manifest["layers"]]
    if len(steps) != len(layers):
        # Imported bases (docker import) may carry no history; label them as unknown.
        steps = ["<base>"] * (len(layers) - len(steps)) + steps
    return list(zip(steps, layers, strict=True))
