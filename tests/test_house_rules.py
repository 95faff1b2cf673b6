"""House rules that are not about imports: no product function is named like a test.

pytest collects ``test_*`` functions and a reader takes them for tests; the candidate-image check
was once ``delivery.local.test_image`` (now ``delivery.build.check_candidate``). The import rules
are in test_import_contracts.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("components", "modelstore", "app/modelserver", "delivery", "policy", "training", "preflight",
           "modelship_contract")
"""The product's packages (the root's *.py files count too); tests/ and benchmarks/ are not product."""


def functions_named_like_tests(root: Path) -> list[str]:
    """``path:line name`` of every product function whose name starts with ``test_``."""
    files = sorted(root.glob("*.py"))
    for package in PRODUCT:
        files += sorted(p for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts)
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"):
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}")
    return sorted(found)


def test_no_product_function_is_named_like_a_test() -> None:
    assert functions_named_like_tests(ROOT) == []


def test_a_product_function_named_like_a_test_is_found(tmp_path: Path) -> None:
    (tmp_path / "delivery").mkdir()
    (tmp_path / "delivery" / "build.py").write_text(
        "class C:\n    async def test_later(self):\n        pass\n\n\ndef test_image(settings):\n    pass\n")
    (tmp_path / "settings.py").write_text("def load():\n    pass\n")
    assert functions_named_like_tests(tmp_path) == ["delivery/build.py:2 test_later",
                                                    "delivery/build.py:6 test_image"]
