"""CycloneDX SBOM of an image's Python environment and Debian packages, stored in the registry next to it.

``generate`` copies the image's ``/opt/venv`` site-packages and dpkg database out of a created (never
started) container and runs ``cyclonedx-py environment`` (PyPI ``cyclonedx-bom``, pinned) over exactly
those installed distributions, and cdxgen over the Debian packages (:mod:`delivery.sbom_os`): one
document, each component tagged with its part. ``push`` stores the SBOM with ``oras`` (PyPI, pinned) as an OCI
artifact whose ``subject`` is the image manifest, so it is linked to the image *digest*, not to a
tag. Registries with the OCI 1.1 referrers API (ACR) list it under ``/v2/<repo>/referrers/<digest>``;
for those without it (Debian's docker-registry 2.8 here) ``push`` also maintains the referrers tag
``sha256-<hex>`` the OCI distribution spec defines as the fallback, which ``oras discover`` reads too.
``pull`` finds the SBOM of an image digest either way.

The registry calls go through :mod:`delivery.oci`: https (plain http only to a loopback registry
such as the local one), credentials when the registry asks (ACR: a token from ``az acr login
--expose-token``, never in an argv, a log or the stack's state), a bounded timeout on every call.
``python -m delivery.sbom push --image REGISTRY/REPO[:TAG]@sha256:... [--acr NAME]`` is what the
cloud path runs after the container test (``components/image_sbom.py``); see :func:`main`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from components.image_sbom import DIGEST_PREFIX
from delivery import engine, oci, processes, sbom_os

SBOM_MEDIA_TYPE = "application/vnd.cyclonedx+json"
"""artifactType of the SBOM artifact and media type of its one layer."""
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
_ACCEPT = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json", MANIFEST_MEDIA_TYPE, INDEX_MEDIA_TYPE,
    "application/vnd.docker.distribution.manifest.list.v2+json",
])


class SbomError(RuntimeError):
    """An SBOM could not be generated, stored or found; the message says which step and why."""


class SbomCredentialsError(SbomError):
    """Registry credentials are missing, unobtainable or refused (exit 3)."""


def generate(image: str, out: Path) -> dict:
    """Write the CycloneDX JSON SBOM of ``image`` to ``out``; return it parsed.

    Two parts, each component tagged ``modelship:sbom:part``: ``python``, the distributions in
    ``/opt/venv`` (``cyclonedx-py``), and ``os``, the Debian packages of its dpkg database (cdxgen,
    :mod:`delivery.sbom_os`). Both tools run at once, on files copied out of a created container.
    """
    name = f"modelship-sbom-{os.getpid()}-{hashlib.sha256(image.encode()).hexdigest()[:8]}"
    with tempfile.TemporaryDirectory(prefix="modelship-sbom-") as tmp:
        root = Path(tmp)
        try:
            engine.docker("create", "--name", name, image, timeout=60)
            engine.docker("cp", f"{name}:/opt/venv/lib", str(root / "lib"), timeout=300)
            sbom_os.copy_dpkg_tree(name, root / "rootfs")
        except engine.DockerError as exc:
            raise SbomError(f"cannot read /opt/venv from {image}: {exc}") from exc
        except sbom_os.OsPackagesError as exc:
            raise SbomError(f"{image}: {exc}") from None
        finally:
            engine.remove_container(name)
        site = sorted((root / "lib").glob("python3*/site-packages"))
        if not site:
            raise SbomError(f"{image} has no /opt/venv/lib/python3*/site-packages")
        try:
            cdxgen = sbom_os.start(root / "rootfs", root / "os.cdx.json", root / "cdxgen.log")
        except sbom_os.OsPackagesError as exc:
            raise SbomError(f"OS packages of {image}: {exc}") from None
        try:
            # cyclonedx-py asks "<python> -S -c 'print(sys.path)'"; this interpreter answers with the
            # image's site-packages (and the host's standard library, which holds no distributions).
            shim = root / "python"
            shim.write_text(f"#!/bin/sh\nexec env PYTHONPATH={site[0]} {sys.executable} \"$@\"\n")
            shim.chmod(0o755)
            cmd = [str(Path(sys.executable).parent / "cyclonedx-py"), "environment", "-S", "--of", "JSON",
                   "--sv", sbom_os.SPEC_VERSION, "--output-reproducible", "--mc-type", "application",
                   "-o", str(out), str(shim)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
            if proc.returncode != 0:
                raise SbomError(f"cyclonedx-py failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
            os_bom = sbom_os.finish(cdxgen, root / "os.cdx.json", root / "cdxgen.log")
            bom = sbom_os.merge(json.loads(out.read_text()), os_bom, sbom_os.os_release(root / "rootfs"))
        except sbom_os.OsPackagesError as exc:
            raise SbomError(f"OS packages of {image}: {exc}") from None
        finally:
            processes.terminate(cdxgen)  # cdxgen and the trivy it runs, if still running
    return _write_for(bom, image, out)


def _write_for(bom: dict, image: str, out: Path) -> dict:
    """Name ``image`` as the SBOM's subject (property ``modelship:image``) and write it to ``out``."""
    properties = bom.setdefault("metadata", {}).setdefault("properties", [])
    properties[:] = [p for p in properties if p.get("name") != "modelship:image"]
    properties.append({"name": "modelship:image", "value": image})
    out.write_text(json.dumps(bom, indent=2, sort_keys=True) + "\n")
    return bom


def part_counts(bom: dict) -> dict[str, int]:
    """How many components each part of ``bom`` lists (``python``, ``os``; ``untagged`` for others)."""
    counts: dict[str, int] = {}
    for component in bom.get("components", []):
        part = next((p["value"] for p in component.get("properties", []) if p.get("name") == sbom_os.PART),
                    "untagged")
        counts[part] = counts.get(part, 0) + 1
    return counts


def environment_key(context: Path, base_image_id: str) -> str:
    """A digest of everything the image's ``/opt/venv`` and OS packages come from: the Dockerfile,
    the pinned requirements, the wheelhouse (file names and sizes: a wheel's name carries its
    version) and the base image (its dpkg database: the final stage installs no Debian package), and
    of the SBOM tools' versions. Equal keys give the same SBOM, so it can be reused (:func:`reuse`).
    """
    context = Path(context)
    digest = hashlib.sha256()
    for part in ("Dockerfile", "requirements.txt"):
        digest.update(f"{part}\0".encode() + (context / part).read_bytes() + b"\0")
    for wheel in sorted((context / "wheels").glob("*.whl")):
        digest.update(f"{wheel.name}\0{wheel.stat().st_size}\0".encode())
    digest.update(base_image_id.encode())
    digest.update(sbom_os.generator_id().encode())  # the tools that describe it
    return digest.hexdigest()


def reuse(cached: Path, image: str, out: Path) -> dict:
    """Write the SBOM ``cached`` (of an image with the same environment) to ``out`` for ``image``."""
    return _write_for(json.loads(Path(cached).read_text()), image, out)


def _session(registry: str, repository: str, actions: str, credentials: oci.Credentials | None,
             ca_bundle: Path | str | None) -> oci.Session:
    try:
        return oci.Session(registry, repository, credentials=credentials, actions=actions,
                           ca_bundle=ca_bundle)
    except oci.CredentialsError as exc:
        raise SbomCredentialsError(str(exc)) from None
    except oci.RegistryError as exc:
        raise SbomError(str(exc)) from None


def _get(session: oci.Session, path: str, accept: str = _ACCEPT) -> tuple[int, bytes, str]:
    try:
        resp = session.request("GET", path, accept=accept)
    except oci.RegistryError as exc:
        raise SbomError(str(exc)) from None
    return resp.status_code, resp.content, resp.headers.get("Content-Type", "")


def _get_ok(session: oci.Session, path: str, what: str, accept: str = _ACCEPT) -> tuple[bytes, str]:
    status, body, media_type = _get(session, path, accept)
    if status != 200:
        raise SbomError(f"cannot read {what} from {session.host}/{session.repository}: HTTP {status}")
    return body, media_type


def _descriptor(session: oci.Session, reference: str) -> dict:
    body, media_type = _get_ok(session, f"manifests/{reference}", f"manifest {reference}")
    return {"mediaType": media_type.split(";")[0], "size": len(body),
            "digest": "sha256:" + hashlib.sha256(body).hexdigest()}


def _fallback_tag(digest: str) -> str:
    return digest.replace(":", "-")


def push(registry: str, repository: str, image_digest: str, sbom_file: Path, *,
         credentials: oci.Credentials | None = None, ca_bundle: Path | str | None = None) -> str:
    """Store ``sbom_file`` as an artifact whose subject is ``repository@image_digest``; return its digest.

    https unless ``registry`` is a loopback one (:mod:`delivery.oci`), authenticated with
    ``credentials`` when the registry asks for them.
    """
    import oras.oci

    session = _session(registry, repository, "pull,push", credentials, ca_bundle)
    subject = _descriptor(session, image_digest)
    if subject["digest"] != image_digest:
        raise SbomError(f"{registry}/{repository}@{image_digest} answered with manifest {subject['digest']}")
    tag = f"{_fallback_tag(image_digest)}.sbom"
    with contextlib.chdir(sbom_file.parent):
        try:
            resp = session.client.push(
                target=f"{registry}/{repository}:{tag}",
                files=[f"{sbom_file.name}:{SBOM_MEDIA_TYPE}"],
                manifest_annotations={
                    "org.opencontainers.image.description": "CycloneDX SBOM (Python env, Debian packages)"},
                subject=oras.oci.Subject(**subject),
                quiet=True,
            )
        except Exception as exc:  # oras raises plain exceptions (requests, ValueError)
            raise SbomError(f"oras push of the SBOM to {registry}/{repository} failed: "
                            f"{oci._reason(exc)}") from None
    digest = resp.headers.get("Docker-Content-Digest") or _descriptor(session, tag)["digest"]
    # A registry that indexes referrers itself says so (OCI distribution spec 1.1: the OCI-Subject
    # header) or answers the referrers API (ACR); for the others the client maintains the tag.
    if (resp.headers.get("OCI-Subject") != image_digest
            and _get(session, f"referrers/{image_digest}", INDEX_MEDIA_TYPE)[0] == 404):
        _add_to_referrers_tag(session, image_digest, {
            **_descriptor(session, digest), "artifactType": SBOM_MEDIA_TYPE,
        })
    return digest


def _add_to_referrers_tag(session: oci.Session, image_digest: str, descriptor: dict) -> None:
    """The OCI referrers tag schema: an index at ``sha256-<hex>`` listing the image's referrers."""
    status, body, _ = _get(session, f"manifests/{_fallback_tag(image_digest)}", INDEX_MEDIA_TYPE)
    if status == 404:
        index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
    elif status == 200:
        index = json.loads(body)
    else:
        raise SbomError(f"cannot read the referrers tag of {image_digest} from {session.host}: HTTP {status}")
    index["manifests"] = [m for m in index["manifests"] if m.get("digest") != descriptor["digest"]]
    index["manifests"].append(descriptor)
    try:
        resp = session.request("PUT", f"manifests/{_fallback_tag(image_digest)}",
                               body=json.dumps(index, sort_keys=True).encode(), content_type=INDEX_MEDIA_TYPE)
    except oci.RegistryError as exc:
        raise SbomError(str(exc)) from None
    if resp.status_code not in (200, 201):
        raise SbomError(f"cannot write the referrers tag of {image_digest} to {session.host}: "
                        f"HTTP {resp.status_code}")


def _referrers(session: oci.Session, image_digest: str) -> list[dict]:
    status, body, _ = _get(session, f"referrers/{image_digest}", INDEX_MEDIA_TYPE)
    if status == 200:
        return json.loads(body)["manifests"]
    if status != 404:
        raise SbomError(f"referrers of {image_digest} in {session.host}/{session.repository}: HTTP {status}")
    status, body, _ = _get(session, f"manifests/{_fallback_tag(image_digest)}", INDEX_MEDIA_TYPE)
    if status == 404:
        return []
    if status != 200:
        raise SbomError(f"referrers tag of {image_digest} in {session.host}/{session.repository}: "
                        f"HTTP {status}")
    return json.loads(body)["manifests"]


def referrers(registry: str, repository: str, image_digest: str, *,
              credentials: oci.Credentials | None = None, ca_bundle: Path | str | None = None) -> list[dict]:
    """Descriptors of the artifacts that refer to ``image_digest`` (referrers API, else the tag)."""
    return _referrers(_session(registry, repository, "pull", credentials, ca_bundle), image_digest)


def pull(registry: str, repository: str, image_digest: str, *, credentials: oci.Credentials | None = None,
         ca_bundle: Path | str | None = None) -> tuple[str, dict]:
    """The SBOM linked to ``image_digest``: (artifact digest, CycloneDX document)."""
    session = _session(registry, repository, "pull", credentials, ca_bundle)
    found = [d for d in _referrers(session, image_digest) if d.get("artifactType") == SBOM_MEDIA_TYPE]
    if not found:
        raise SbomError(f"no SBOM refers to {registry}/{repository}@{image_digest}")
    digest = found[-1]["digest"]
    body, _ = _get_ok(session, f"manifests/{digest}", f"SBOM manifest {digest}", MANIFEST_MEDIA_TYPE)
    manifest = json.loads(body)
    if manifest.get("subject", {}).get("digest") != image_digest:
        raise SbomError(f"SBOM {digest} names subject {manifest.get('subject')}, not {image_digest}")
    layer = next(layer for layer in manifest["layers"] if layer["mediaType"] == SBOM_MEDIA_TYPE)
    blob, _ = _get_ok(session, f"blobs/{layer['digest']}", f"SBOM blob {layer['digest']}", SBOM_MEDIA_TYPE)
    if "sha256:" + hashlib.sha256(blob).hexdigest() != layer["digest"]:
        raise SbomError(f"SBOM blob {layer['digest']} does not match its digest")
    return digest, json.loads(blob)


# --- command line -------------------------------------------------------------------------------

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CREDENTIALS = 3
PASSWORD_ENV = "MODELSHIP_REGISTRY_PASSWORD"
"""Where ``--username``'s password or token may come from (else ``--password-stdin``)."""


def _credentials(args, stdin) -> oci.Credentials | None:
    if args.acr:
        try:
            return oci.acr_credentials(args.acr)
        except oci.CredentialsError as exc:
            raise SbomCredentialsError(str(exc)) from None
    if not args.username:
        return None
    password = stdin.readline().rstrip("\r\n") if args.password_stdin else os.environ.get(PASSWORD_ENV, "")
    if not password:
        raise SbomCredentialsError(f"--username {args.username} needs a password or token: on stdin with "
                                   f"--password-stdin, or in ${PASSWORD_ENV}")
    return oci.Credentials(args.username, password)


def cli_parser() -> argparse.ArgumentParser:
    """The command line of :func:`main`."""
    parser = argparse.ArgumentParser(prog="python -m delivery.sbom",
                                     description=(main.__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("push", "generate (or take --sbom) and store the SBOM of a pushed image digest"),
                       ("pull", "fetch the SBOM linked to an image digest")):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument("--image", required=True,
                         help="REGISTRY/REPO[:TAG]@sha256:<64 hex> (pinned by digest)")
        who = cmd.add_mutually_exclusive_group()
        who.add_argument("--acr", metavar="NAME",
                         help="ACR name: get a token with `az acr login --expose-token`")
        who.add_argument("--username",
                         help=f"registry user; the password from --password-stdin or ${PASSWORD_ENV}")
        cmd.add_argument("--password-stdin", action="store_true",
                         help="read --username's password from stdin")
        cmd.add_argument("--ca-bundle", type=Path, help="PEM CA bundle for the registry's TLS certificate")
        cmd.add_argument("--out", type=Path, help="write the SBOM JSON here")
        if name == "push":
            cmd.add_argument("--sbom", type=Path, help="push this CycloneDX JSON instead of generating one")
    return parser


def main(argv: list[str] | None = None, stdin=None) -> int:
    """Store or fetch the CycloneDX SBOM of an image, in its registry, linked to its digest.

    ``python -m delivery.sbom push|pull --image REGISTRY/REPO[:TAG]@sha256:...``

    push: generate the CycloneDX SBOM of the image (or take ``--sbom FILE``) and store it in the
    image's repository linked to its digest; the last stdout line is ``sbom sha256:<artifact>``.
    pull: print the SBOM linked to the digest (or write it to ``--out``).
    Exit codes: 0 done, 1 failed (the message names the registry and the step), 2 bad arguments,
    3 credentials missing, unobtainable or refused.
    """
    from modelship_contract import image as image_contract

    parser = cli_parser()
    args = parser.parse_args(argv)

    def fail(code: int, message: str) -> int:
        print(f"sbom: {'error' if code == EXIT_USAGE else 'FAILED'}: {message}", file=sys.stderr)
        return code

    match = image_contract.DIGEST_REF_RE.match(args.image)
    if not match:
        parser.print_usage(sys.stderr)
        return fail(EXIT_USAGE, f"--image {args.image!r} is not pinned by digest "
                                "(REGISTRY/REPO[:TAG]@sha256:<64 hex>)")
    if args.password_stdin and not args.username:
        return fail(EXIT_USAGE, "--password-stdin needs --username")
    if getattr(args, "sbom", None) is not None and not args.sbom.is_file():
        return fail(EXIT_USAGE, f"--sbom {args.sbom} is not a file")
    registry, repository, digest = match.group("host"), match.group("repo"), match.group("digest")
    try:
        credentials = _credentials(args, stdin or sys.stdin)
        if args.command == "pull":
            sbom_digest, bom = pull(registry, repository, digest, credentials=credentials,
                                    ca_bundle=args.ca_bundle)
            text = json.dumps(bom, indent=2, sort_keys=True) + "\n"
            if args.out:
                args.out.write_text(text)
                print(f"{DIGEST_PREFIX}{sbom_digest}")
            else:
                sys.stdout.write(text)
            return 0
        with tempfile.TemporaryDirectory(prefix="modelship-sbom-") as tmp:
            out = args.out or Path(tmp) / f"{digest.replace(':', '-')}.cdx.json"
            if args.sbom is not None:
                try:
                    bom = reuse(args.sbom, args.image, out)
                    if bom.get("bomFormat") != "CycloneDX":
                        raise ValueError("no bomFormat CycloneDX")
                except (ValueError, AttributeError):
                    return fail(EXIT_USAGE, f"--sbom {args.sbom} is not a CycloneDX JSON document")
                how = f"from {args.sbom}"
            else:
                print(f"sbom: generating the SBOM of {args.image}", file=sys.stderr, flush=True)
                bom = generate(args.image, out)
                how = "generated"
            sbom_digest = push(registry, repository, digest, out, credentials=credentials,
                               ca_bundle=args.ca_bundle)
    except SbomCredentialsError as exc:
        return fail(EXIT_CREDENTIALS, str(exc))
    except SbomError as exc:
        return fail(EXIT_FAILED, str(exc))
    except OSError as exc:  # --out or a temporary file could not be written
        return fail(EXIT_FAILED, f"{exc.filename or 'a file'}: {exc.strerror or exc}")
    print(f"sbom: {len(bom.get('components', []))} components ({how}) stored in {registry}/{repository} "
          f"as {sbom_digest}, linked to {digest}", file=sys.stderr)
    print(f"{DIGEST_PREFIX}{sbom_digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
