"""The local flow's command line (delivery/cli.py): make passes the arguments, bad ones exit 1 with a
message and no traceback, and one `up` per deployment runs at a time. No Docker."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from delivery.cli import up
from delivery.settings import ROOT, DeliveryError, LocalSettings


def test_make_up_model_reaches_the_cli(tmp_path: Path) -> None:
    """`make up MODEL=x` passes --model x; a bad one is refused before anything starts (exit 1)."""
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), "up", "MODEL=digits@1.1.0"],
                         capture_output=True, text=True, check=True).stdout
    assert '-m delivery.cli up --model "digits@1.1.0"' in dry
    bad = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "delivery.cli", "up",
                          "--model", "digits@no/good"], cwd=ROOT, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "MODELSHIP_STATE_DIR": str(tmp_path)}, timeout=60)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "MODEL='digits@no/good' is not allowed" in bad.stderr


def test_a_second_up_of_the_same_deployment_is_refused_while_one_runs(tmp_path: Path) -> None:
    import fcntl

    settings = LocalSettings.from_env({"MODELSHIP_STATE_DIR": str(tmp_path), "MODELSHIP_INSTANCE": "locked"})
    with open(tmp_path / "up-locked.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(DeliveryError, match="another `up` of locked is running"):
            up(settings)
