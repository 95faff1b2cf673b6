"""docs/architecture.png is the picture of the program as committed.

It lives with the components' tests on purpose: every change to the stack runs them, and a stack
change that alters the diagram must commit the regenerated picture (`make plan`), so that
`make plan` on an unchanged checkout leaves `git status` clean.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_plan_leaves_the_committed_diagram_unchanged(tmp_path: Path) -> None:
    out = tmp_path / "architecture"
    proc = subprocess.run([sys.executable, "-m", "delivery.plan", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = out.with_suffix(".png").read_bytes()
    committed = (ROOT / "docs" / "architecture.png").read_bytes()
    assert fresh == committed, (
        "docs/architecture.png no longer matches the program: run `make plan` and commit "
        "docs/architecture.png with your change"
    )
