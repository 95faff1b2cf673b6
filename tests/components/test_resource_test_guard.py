"""The suite's guard: a resource test that forgot ``@pulumi.runtime.test`` fails instead of passing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_resource_test_without_the_decorator_fails(tmp_path: Path) -> None:
    test_file = tmp_path / "test_forgot.py"
    test_file.write_text(textwrap.dedent('''
        import pulumi
        from components import ModelStore, ModelStoreArgs
        from components.testing import install_mocks

        def test_forgot_decorator():
            install_mocks()
            store = ModelStore("s", ModelStoreArgs(resource_group_name="rg", account_name="bad",
                                                   location="l", grant_read_to_deployer=False))
            return store.account_name.apply(lambda n: (_ for _ in ()).throw(AssertionError(n)))
    '''))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(ROOT / "pyproject.toml"),
         "--rootdir", str(ROOT), str(test_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "PytestReturnNotNoneWarning" in result.stdout, result.stdout
    assert "1 failed" in result.stdout
