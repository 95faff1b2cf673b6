"""The contract package is standard library only at import: the server, the store, the Pulumi program
and a bare ``python`` in the image's build stage can all import it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import modelship_contract

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(f"modelship_contract.{m.name}" for m in pkgutil.iter_modules(modelship_contract.__path__))

# Imports every module of the package in an interpreter without site-packages (-S), then lists what
# it could not import or imported from outside the standard library and the package itself.
PROBE = """
import importlib, sys
outside = set()
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        outside.add(exc.name.split(".")[0])
ours = {"modelship_contract", "__main__"}
outside |= {m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names) - ours
print(" ".join(sorted(outside)))
"""


def outside_the_standard_library(path: Path, modules: list[str]) -> list[str]:
    result = subprocess.run([sys.executable, "-S", "-E", "-c", PROBE, *modules], cwd=path,
                            capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.split()


def test_the_package_has_the_modules_its_users_import() -> None:
    assert MODULES == ["modelship_contract.canary", "modelship_contract.image", "modelship_contract.manifest",
                       "modelship_contract.signature"]


def test_importing_the_contract_imports_only_the_standard_library() -> None:
    assert outside_the_standard_library(ROOT, MODULES) == []


def test_a_third_party_import_is_caught(tmp_path: Path) -> None:
    package = tmp_path / "modelship_contract"
    package.mkdir()
    for module in Path(modelship_contract.__file__).parent.glob("*.py"):
        (package / module.name).write_bytes(module.read_bytes())
    manifest = package / "manifest.py"
    manifest.write_text(manifest.read_text() + "\nimport numpy  # deliberate\n")
    assert outside_the_standard_library(tmp_path, MODULES) == ["numpy"]
