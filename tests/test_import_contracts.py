"""House rules as code: the import-linter contracts in `.importlinter` hold, and each one can break.

The second test copies the project's Python sources into a temporary tree, adds one import that a
contract forbids, and runs the same `lint-imports` there: it must fail and name that contract.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
# Where each root package lives in the tree (`modelserver` is the app's package under app/).
SOURCES = {
    "modelship_contract": "modelship_contract",
    "components": "components",
    "modelstore": "modelstore",
    "modelserver": "app/modelserver",
    "delivery": "delivery",
    "policy": "policy",
    "training": "training",
    "preflight": "preflight",
    "tests": "tests",
}

# contract id -> (file to edit, the forbidden import appended to it)
VIOLATIONS = {
    "app-stands-alone": ("app/modelserver/predictor.py", "import pulumi"),
    "store-without-pulumi-or-server": ("modelstore/store.py", "from modelserver import predictor"),
    "policy-without-components": ("policy/rules.py", "import components.service"),
    "components-use-only-the-contract": ("components/service.py", "from modelserver import http"),
    "no-test-helpers-in-product": ("delivery/plan.py", "from components import testing"),
    "doctor-only-reads": ("preflight/checks.py", "import delivery.cli"),
    "library-runs-no-processes": ("modelstore/cli.py", "import subprocess"),
    "contract-stands-alone": ("modelship_contract/manifest.py", "import numpy"),
}


def contract_names() -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    prefix = "importlinter:contract:"
    return {s.removeprefix(prefix): parser[s]["name"] for s in parser.sections() if s.startswith(prefix)}


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'app'}"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / ".importlinter")],
        cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_every_contract_is_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contract_names())} kept, 0 broken." in result.stdout, result.stdout


def test_every_contract_has_a_violation_case() -> None:
    assert set(VIOLATIONS) == set(contract_names())


@pytest.mark.parametrize("contract", sorted(VIOLATIONS))
def test_a_forbidden_import_breaks_its_contract(contract: str, tmp_path: Path) -> None:
    for package, rel in SOURCES.items():
        shutil.copytree(ROOT / rel, tmp_path / rel,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "wheels", "model"))
        assert (tmp_path / rel / "__init__.py").is_file(), package
    shutil.copy(CONFIG, tmp_path / ".importlinter")
    rel, line = VIOLATIONS[contract]
    target = tmp_path / rel
    target.write_text(target.read_text() + f"\n{line}  # deliberate violation\n")

    result = lint_imports(tmp_path)

    assert result.returncode != 0, result.stdout
    name = contract_names()[contract]
    broken = [contract_names()[c] for c in contract_names() if f"{contract_names()[c]} BROKEN" in
              " ".join(result.stdout.split())]
    assert broken == [name], result.stdout
    module = rel.removeprefix("app/").removesuffix(".py").replace("/", ".")
    assert module in result.stdout, result.stdout
