"""An image SBOM's two parts, and what dpkg says is installed in an image (shared by the SBOM tests)."""

from __future__ import annotations

from packageurl import PackageURL

from delivery import engine, sbom_os

DPKG_FORMAT = "${Package}\t${Version}\t${Architecture}\n"


def part(component: dict) -> str | None:
    return next((p["value"] for p in component.get("properties", []) if p["name"] == sbom_os.PART), None)


def dpkg_packages(image: str) -> set[tuple[str, str, str]]:
    out = engine.docker("run", "--rm", "--network", "none", "--entrypoint", "dpkg-query", image,
                        "-W", "-f", DPKG_FORMAT, timeout=120).stdout
    return {tuple(line.split("\t")) for line in out.splitlines() if line}


def os_packages(bom: dict) -> set[tuple[str, str, str]]:
    found = set()
    for component in bom["components"]:
        if part(component) != sbom_os.OS_PART:
            continue
        purl = PackageURL.from_string(component["purl"])
        assert (purl.type, purl.namespace) == ("deb", "debian"), component["purl"]
        assert (purl.name, purl.version) == (component["name"], component["version"])
        assert purl.qualifiers["distro"] == "debian-12"
        assert component["bom-ref"]
        found.add((purl.name, purl.version, purl.qualifiers["arch"]))
    return found
