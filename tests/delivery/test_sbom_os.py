"""The SBOM's Debian part: exactly the image's installed packages (``dpkg-query -W``), beside its Python
part, each component tagged with its part; a valid CycloneDX 1.6 document; cdxgen runs offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from delivery import engine, sbom, sbom_os
from tests.delivery.sbom_parts import dpkg_packages, os_packages, part
from tests.needs import unavailable


def needs_cdxgen() -> None:
    if not os.access(sbom_os.cdxgen_bin(), os.X_OK):
        unavailable(f"cdxgen is not installed at {sbom_os.cdxgen_bin()}: run scripts/bootstrap.sh")


@pytest.fixture(scope="module")
def small_image(docker_engine, base_image, tmp_path_factory) -> str:
    """The local base with a /opt/venv holding one distribution: the SBOM's two parts, built in seconds."""
    context = tmp_path_factory.mktemp("sbom-os-image")
    (context / "Dockerfile").write_text(
        f"FROM {base_image}\n"
        "RUN python3 -m venv --without-pip /opt/venv \\\n"
        " && d=$(echo /opt/venv/lib/python3*/site-packages)/demo_dist-1.2.3.dist-info \\\n"
        " && mkdir -p $d \\\n"
        " && printf 'Metadata-Version: 2.1\\nName: demo-dist\\nVersion: 1.2.3\\n' > $d/METADATA\n")
    tag = f"modelship-test/sbom-os:{uuid.uuid4().hex[:12]}"
    engine.docker("build", "-q", "-t", tag, str(context), timeout=600)
    yield tag
    engine.docker("rmi", "-f", tag, check=False, timeout=120)


@pytest.mark.docker
def test_the_os_part_is_exactly_the_images_dpkg_packages(small_image: str, tmp_path: Path) -> None:
    needs_cdxgen()
    bom = sbom.generate(small_image, tmp_path / "sbom.json")
    expected = dpkg_packages(small_image)
    assert len(expected) > 50  # a real Debian root filesystem, not an empty database
    assert os_packages(bom) == expected  # no more, no fewer: source packages and files are not components
    assert len([c for c in bom["components"] if part(c) == sbom_os.OS_PART]) == len(expected)
    python = [(c["name"], c["version"], c["purl"])
              for c in bom["components"] if part(c) == sbom_os.PYTHON_PART]
    assert python == [("demo-dist", "1.2.3", "pkg:pypi/demo-dist@1.2.3")]
    refs = [c["bom-ref"] for c in bom["components"]]
    assert len(refs) == len(set(refs))
    # Every dependency names components of this document (dpkg's Depends between installed packages).
    for dependency in bom["dependencies"]:
        assert {dependency["ref"], *dependency.get("dependsOn", [])} <= set(refs)
    assert any(d.get("dependsOn") for d in bom["dependencies"] if d["ref"].startswith("pkg:deb/"))
    properties = {p["name"]: p["value"] for p in bom["metadata"]["properties"]}
    assert properties["modelship:os"].startswith("Debian GNU/Linux 12")
    assert properties["modelship:image"] == small_image
    tools = {t["name"] for t in bom["metadata"]["tools"]["components"]}
    assert {"cyclonedx-py", "cdxgen", "trivy"} <= tools
    assert_valid_cyclonedx(tmp_path / "sbom.json")
    # Licences come from the packages' copyright files, which the base image keeps: trivy reads a
    # licence from most (105 of 118 on bookworm: it follows no doc-directory symlink, and a few
    # copyright files name no licence it knows).
    licensed = [c for c in bom["components"] if part(c) == sbom_os.OS_PART and c.get("licenses")]
    assert len(licensed) >= 0.8 * len(expected), f"{len(licensed)} of {len(expected)} with a licence"


def assert_valid_cyclonedx(path: Path) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(path.read_text())
    assert error is None, str(error)


@pytest.mark.docker
def test_cdxgen_needs_no_network(small_image: str, tmp_path: Path) -> None:
    """The OS part is produced in a network namespace with no interface but loopback."""
    needs_cdxgen()
    if not shutil.which("unshare") or subprocess.run(["unshare", "-n", "true"], check=False).returncode:
        unavailable("`unshare -n` (util-linux, as root) is needed to run cdxgen without a network")
    container = f"modelship-test-sbom-os-{uuid.uuid4().hex[:8]}"
    engine.docker("create", "--name", container, small_image, timeout=60)
    try:
        sbom_os.copy_dpkg_tree(container, tmp_path / "rootfs")
    finally:
        engine.remove_container(container)
    # The product's own command line and environment, so an option that needs the network fails here.
    proc = subprocess.run(["unshare", "-n", *sbom_os.command(tmp_path / "rootfs", tmp_path / "os.json")],
                          capture_output=True, text=True, timeout=300, env=sbom_os.environment())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    found = {(c["name"], c["version"]) for c in
             sbom_os.installed_packages(json.loads((tmp_path / "os.json").read_text()))}
    assert found == {(name, version) for name, version, _ in dpkg_packages(small_image)}


# --- without Docker: how the two parts are put together ---------------------------------------------

def pkg(name: str, version: str, *, installed: bool = True, tags: list[str] | None = None) -> dict:
    ref = f"pkg:deb/debian/{name}@{version}?arch=amd64&distro=debian-12"
    properties = [{"name": "aquasecurity:trivy:PkgID", "value": f"{name}@{version}"}] if installed else []
    return {"bom-ref": ref, "purl": ref, "name": name, "version": version, "type": "library",
            "properties": properties, **({"tags": tags} if tags else {})}


def test_merge_keeps_installed_packages_only_and_tags_both_parts() -> None:
    python = {"specVersion": "1.6", "components": [{"bom-ref": "numpy==2.4.6", "name": "numpy"}],
              "dependencies": [{"ref": "numpy==2.4.6"}],
              "metadata": {"tools": {"components": [{"group": "CycloneDX", "name": "cyclonedx-py"}]}}}
    libc, source = pkg("libc6", "2.36-9"), pkg("glibc", "2.36-9", installed=False, tags=["source"])
    merged_source = pkg("util-linux", "2.38.1-5", tags=["source"])  # binary and source of one name
    os_bom = {
        "components": [libc, source, merged_source,
                       {"bom-ref": "pkg:generic/os-release", "purl": "pkg:generic/os-release", "name": "x"}],
        "dependencies": [{"ref": "pkg:container/rootfs@latest", "dependsOn": [libc["bom-ref"]]},
                         {"ref": merged_source["bom-ref"], "dependsOn": [libc["bom-ref"], source["bom-ref"]],
                          "provides": ["pkg:generic/copyright"]},
                         {"ref": libc["bom-ref"], "dependsOn": [source["bom-ref"]]}],
        "metadata": {"tools": {"components": [{"name": "trivy", "properties": [{"name": "internal:x"}]},
                                              {"group": "@cyclonedx", "name": "cdxgen"}]}},
    }
    merged = sbom_os.merge(python, os_bom, "Debian GNU/Linux 12 (bookworm)")
    assert [(c["name"], part(c)) for c in merged["components"]] == [
        ("numpy", "python"), ("libc6", "os"), ("util-linux", "os")]
    assert merged["dependencies"] == [{"ref": "numpy==2.4.6"}, {"ref": libc["bom-ref"]},
                                      {"ref": merged_source["bom-ref"], "dependsOn": [libc["bom-ref"]]}]
    tools = merged["metadata"]["tools"]["components"]
    assert [t["name"] for t in tools] == ["cyclonedx-py", "trivy", "cdxgen"]
    assert "properties" not in tools[1]
    os_name = {"name": "modelship:os", "value": "Debian GNU/Linux 12 (bookworm)"}
    assert os_name in merged["metadata"]["properties"]
    assert python["components"] == [{"bom-ref": "numpy==2.4.6", "name": "numpy"}]  # the input is not changed


def test_merge_refuses_a_document_without_installed_packages() -> None:
    with pytest.raises(sbom_os.OsPackagesError, match="no installed Debian package"):
        sbom_os.merge({"components": []}, {"components": [pkg("glibc", "2.36", installed=False)]}, "Debian")


def test_a_missing_cdxgen_is_named_with_the_fix(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MODELSHIP_CDXGEN", str(tmp_path / "no-cdxgen"))
    with pytest.raises(sbom_os.OsPackagesError, match=r"cdxgen is not installed at .*make bootstrap"):
        sbom_os.start(tmp_path, tmp_path / "out.json", tmp_path / "log")


def test_the_environment_key_follows_the_sbom_tools(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "wheels").mkdir()
    (tmp_path / "Dockerfile").write_text("FROM base\n")
    (tmp_path / "requirements.txt").write_text("numpy==2.4.6\n")
    key = sbom.environment_key(tmp_path, "sha256:base1")
    lock = tmp_path / "package-lock.json"
    lock.write_text('{"lockfileVersion": 3}')
    monkeypatch.setattr(sbom_os, "LOCK", lock)
    assert sbom.environment_key(tmp_path, "sha256:base1") != key  # another cdxgen: a new SBOM


def test_cdxgen_is_pinned_and_installed_at_the_locked_versions() -> None:
    """package.json names exact versions, the lock agrees, and bootstrap installed exactly those."""
    tools = sbom_os.LOCK.parent
    wanted = json.loads((tools / "package.json").read_text())["dependencies"]
    lock = json.loads(sbom_os.LOCK.read_text())["packages"]
    assert set(wanted) == {"@cyclonedx/cdxgen", "@cdxgen/cdxgen-plugins-bin-linux-amd64"}
    for name, version in wanted.items():
        assert version[0].isdigit() and all(c.isdigit() or c == "." for c in version), (name, version)
        assert lock[f"node_modules/{name}"]["version"] == version
    needs_cdxgen()
    installed = sbom_os.CDXGEN_DIR / "node_modules"
    for path, entry in lock.items():
        if path and not entry.get("optional") and (installed.parent / path / "package.json").is_file():
            assert json.loads((installed.parent / path / "package.json").read_text())["version"] == \
                entry["version"], path
    for name, version in wanted.items():
        assert json.loads((installed / name / "package.json").read_text())["version"] == version


def test_a_stuck_cdxgen_is_stopped_with_what_it_started(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """cdxgen runs trivy under it: a timeout stops the whole process group, not the node process alone."""
    child_pid = tmp_path / "child.pid"
    fake = tmp_path / "cdxgen"
    fake.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {child_pid}\nwait\n")
    fake.chmod(0o755)
    monkeypatch.setenv("MODELSHIP_CDXGEN", str(fake))
    monkeypatch.setattr(sbom_os, "TIMEOUT", 0.5)
    proc = sbom_os.start(tmp_path, tmp_path / "os.json", tmp_path / "cdxgen.log")
    with pytest.raises(sbom_os.OsPackagesError, match="did not finish within"):
        sbom_os.finish(proc, tmp_path / "os.json", tmp_path / "cdxgen.log")
    child = int(child_pid.read_text())
    status = Path(f"/proc/{child}/status")
    assert not status.exists() or "State:\tZ" in status.read_text(), "cdxgen's child was left running"
