"""CycloneDX SBOM of an image's Python environment, stored in the registry next to the image.

``generate`` copies the image's ``/opt/venv`` site-packages out of a created (never started)
container and runs ``cyclonedx-py environment`` (PyPI ``cyclonedx-bom``, pinned) over exactly
those installed distributions. ``push`` stores the SBOM with ``oras`` (PyPI, pinned) as an OCI
artifact whose ``subject`` is the image manifest, so it is linked to the image *digest*, not to a
tag. Registries with the OCI 1.1 referrers API (ACR) list it under ``/v2/<repo>/referrers/<digest>``;
for those without it (Debian's docker-registry 2.8 here) ``push`` also maintains the referrers tag
``sha256-<hex>`` the OCI distribution spec defines as the fallback, which ``oras discover`` reads too.
``pull`` finds the SBOM of an image digest either way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from delivery import engine

SBOM_MEDIA_TYPE = "application/vnd.cyclonedx+json"
"""artifactType of the SBOM artifact and media type of its one layer."""
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
_ACCEPT = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json", MANIFEST_MEDIA_TYPE, INDEX_MEDIA_TYPE,
    "application/vnd.docker.distribution.manifest.list.v2+json",
])
TIMEOUT = 30


class SbomError(RuntimeError):
    """An SBOM could not be generated, stored or found; the message says which step and why."""


def generate(image: str, out: Path) -> dict:
    """Write the CycloneDX JSON SBOM of ``image``'s Python environment to ``out``; return it parsed."""
    name = f"modelship-sbom-{os.getpid()}-{hashlib.sha256(image.encode()).hexdigest()[:8]}"
    with tempfile.TemporaryDirectory(prefix="modelship-sbom-") as tmp:
        root = Path(tmp)
        try:
            engine.docker("create", "--name", name, image, timeout=60)
            engine.docker("cp", f"{name}:/opt/venv/lib", str(root / "lib"), timeout=300)
        except engine.DockerError as exc:
            raise SbomError(f"cannot read /opt/venv from {image}: {exc}") from exc
        finally:
            engine.remove_container(name)
        site = sorted((root / "lib").glob("python3*/site-packages"))
        if not site:
            raise SbomError(f"{image} has no /opt/venv/lib/python3*/site-packages")
        # cyclonedx-py asks "<python> -S -c 'print(sys.path)'"; this interpreter answers with the
        # image's site-packages (and the host's standard library, which holds no distributions).
        shim = root / "python"
        shim.write_text(f"#!/bin/sh\nexec env PYTHONPATH={site[0]} {sys.executable} \"$@\"\n")
        shim.chmod(0o755)
        cmd = [str(Path(sys.executable).parent / "cyclonedx-py"), "environment", "-S", "--of", "JSON",
               "--output-reproducible", "--mc-type", "application", "-o", str(out), str(shim)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            raise SbomError(f"cyclonedx-py failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    bom = json.loads(out.read_text())
    bom.setdefault("metadata", {}).setdefault("properties", []).append(
        {"name": "modelship:image", "value": image})
    out.write_text(json.dumps(bom, indent=2, sort_keys=True) + "\n")
    return bom


def environment_key(context: Path, base_image_id: str) -> str:
    """A digest of everything the image's ``/opt/venv`` is built from: the Dockerfile, the pinned
    requirements, the wheelhouse (file names and sizes: a wheel's name carries its version) and the
    base image. Equal keys build the same environment, so its SBOM can be reused (:func:`reuse`).
    """
    context = Path(context)
    digest = hashlib.sha256()
    for part in ("Dockerfile", "requirements.txt"):
        digest.update(f"{part}\0".encode() + (context / part).read_bytes() + b"\0")
    for wheel in sorted((context / "wheels").glob("*.whl")):
        digest.update(f"{wheel.name}\0{wheel.stat().st_size}\0".encode())
    digest.update(base_image_id.encode())
    return digest.hexdigest()


def reuse(cached: Path, image: str, out: Path) -> dict:
    """Write the SBOM ``cached`` (of an image with the same environment) to ``out`` for ``image``."""
    bom = json.loads(Path(cached).read_text())
    properties = bom.setdefault("metadata", {}).setdefault("properties", [])
    properties[:] = [p for p in properties if p.get("name") != "modelship:image"]
    properties.append({"name": "modelship:image", "value": image})
    out.write_text(json.dumps(bom, indent=2, sort_keys=True) + "\n")
    return bom


def _get(url: str, accept: str = _ACCEPT) -> tuple[bytes, str]:
    req = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        return resp.read(), resp.headers.get("Content-Type", "")


def _put_manifest(registry: str, repository: str, reference: str, body: bytes, media_type: str) -> None:
    req = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{reference}", data=body,
                                 method="PUT", headers={"Content-Type": media_type})
    with urllib.request.urlopen(req, timeout=TIMEOUT):
        pass


def _descriptor(registry: str, repository: str, reference: str) -> dict:
    try:
        body, media_type = _get(f"http://{registry}/v2/{repository}/manifests/{reference}")
    except (urllib.error.URLError, OSError) as exc:
        raise SbomError(f"cannot read manifest {repository}@{reference} from {registry}: {exc}") from None
    return {"mediaType": media_type.split(";")[0], "size": len(body),
            "digest": "sha256:" + hashlib.sha256(body).hexdigest()}


def _fallback_tag(digest: str) -> str:
    return digest.replace(":", "-")


def push(registry: str, repository: str, image_digest: str, sbom_file: Path) -> str:
    """Store ``sbom_file`` as an artifact whose subject is ``repository@image_digest``; return its digest."""
    import oras.client
    import oras.oci

    subject = _descriptor(registry, repository, image_digest)
    if subject["digest"] != image_digest:
        raise SbomError(f"{registry}/{repository}@{image_digest} answered with manifest {subject['digest']}")
    client = oras.client.OrasClient(hostname=registry, insecure=True)
    tag = f"{_fallback_tag(image_digest)}.sbom"
    with contextlib.chdir(sbom_file.parent):
        try:
            resp = client.push(
                target=f"{registry}/{repository}:{tag}",
                files=[f"{sbom_file.name}:{SBOM_MEDIA_TYPE}"],
                manifest_annotations={"org.opencontainers.image.description": "CycloneDX SBOM (Python env)"},
                subject=oras.oci.Subject(**subject),
                quiet=True,
            )
        except Exception as exc:  # oras raises plain exceptions (requests, ValueError)
            raise SbomError(f"oras push of the SBOM to {registry}/{repository} failed: {exc}") from None
    digest = resp.headers.get("Docker-Content-Digest") or _descriptor(registry, repository, tag)["digest"]
    _add_to_referrers_tag(registry, repository, image_digest, {
        **_descriptor(registry, repository, digest), "artifactType": SBOM_MEDIA_TYPE,
    })
    return digest


def _add_to_referrers_tag(registry: str, repository: str, image_digest: str, descriptor: dict) -> None:
    """The OCI referrers tag schema: an index at ``sha256-<hex>`` listing the image's referrers."""
    url = f"http://{registry}/v2/{repository}/manifests/{_fallback_tag(image_digest)}"
    try:
        index = json.loads(_get(url, INDEX_MEDIA_TYPE)[0])
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise SbomError(f"cannot read the referrers tag of {image_digest}: {exc}") from None
        index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
    index["manifests"] = [m for m in index["manifests"] if m.get("digest") != descriptor["digest"]]
    index["manifests"].append(descriptor)
    _put_manifest(registry, repository, _fallback_tag(image_digest),
                  json.dumps(index, sort_keys=True).encode(), INDEX_MEDIA_TYPE)


def referrers(registry: str, repository: str, image_digest: str) -> list[dict]:
    """Descriptors of the artifacts that refer to ``image_digest`` (referrers API, else the tag)."""
    base = f"http://{registry}/v2/{repository}"
    try:
        return json.loads(_get(f"{base}/referrers/{image_digest}", INDEX_MEDIA_TYPE)[0])["manifests"]
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise SbomError(f"referrers of {image_digest} in {registry}/{repository}: {exc}") from None
    try:
        return json.loads(_get(f"{base}/manifests/{_fallback_tag(image_digest)}", INDEX_MEDIA_TYPE)[0])[
            "manifests"]
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise SbomError(f"referrers tag of {image_digest} in {registry}/{repository}: {exc}") from None


def pull(registry: str, repository: str, image_digest: str) -> tuple[str, dict]:
    """The SBOM linked to ``image_digest``: (artifact digest, CycloneDX document)."""
    found = [d for d in referrers(registry, repository, image_digest)
             if d.get("artifactType") == SBOM_MEDIA_TYPE]
    if not found:
        raise SbomError(f"no SBOM refers to {registry}/{repository}@{image_digest}")
    digest = found[-1]["digest"]
    url = f"http://{registry}/v2/{repository}/manifests/{digest}"
    manifest = json.loads(_get(url, MANIFEST_MEDIA_TYPE)[0])
    if manifest.get("subject", {}).get("digest") != image_digest:
        raise SbomError(f"SBOM {digest} names subject {manifest.get('subject')}, not {image_digest}")
    layer = next(layer for layer in manifest["layers"] if layer["mediaType"] == SBOM_MEDIA_TYPE)
    blob, _ = _get(f"http://{registry}/v2/{repository}/blobs/{layer['digest']}", SBOM_MEDIA_TYPE)
    if "sha256:" + hashlib.sha256(blob).hexdigest() != layer["digest"]:
        raise SbomError(f"SBOM blob {layer['digest']} does not match its digest")
    return digest, json.loads(blob)
