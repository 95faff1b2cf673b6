"""delivery.imagetest, the container test both paths run: its command line (the contract the
stack's ImageTest relies on) and its reading of the server's start-up log. The test of a real
image runs in the local e2e tests, where ``make up`` tests every image with it before the push."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from delivery.imagetest import main, signer_from_logs
from delivery.settings import ROOT
from modelship_contract.image import DIGEST_REF_RE

DIGEST = "sha256:" + "c" * 64
GOOD = ["--model", "digits", "--version", "1.0.0", "--memory", "640Mi", "--cpu", "1",
        "--startup-seconds", "60"]


@pytest.mark.parametrize(("args", "message"), [
    (["--image", "127.0.0.1:5999/modelship/digits:latest", *GOOD], "is not pinned by digest"),
    (["--image", f"r/m@{DIGEST}", *GOOD[:5], "2GB", *GOOD[6:]], "memory quantity '2GB' is not one of"),
    (["--image", f"r/m@{DIGEST}", *GOOD[:-1], "0"], "--startup-seconds 0: use 1-3600"),
])
def test_bad_arguments_exit_2_naming_the_argument(args, message, capsys) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.usefixtures("docker_engine")
def test_an_image_that_cannot_be_pulled_fails_without_printing_verified() -> None:
    # Port 9 (discard) on loopback: nothing serves a registry there, the pull fails at once.
    image = f"127.0.0.1:9/modelship/digits:r-digits-1@{DIGEST}"
    proc = subprocess.run([sys.executable, "-m", "delivery.imagetest", "--image", image, *GOOD], cwd=ROOT,
                          capture_output=True, text=True, timeout=700)
    assert proc.returncode == 1, proc.stderr
    assert f"FAILED: cannot pull {image}" in proc.stderr
    assert "verified" not in proc.stdout


def test_the_signer_comes_from_the_servers_start_up_line() -> None:
    line = json.dumps({"message": "model verified and loaded", "model": "digits@1", "signer": "ecdsa:ab12"})
    assert signer_from_logs(f"INFO starting\n{line}\n") == "ecdsa:ab12"
    assert signer_from_logs("no json here\n{broken") == "unknown"


def test_only_digest_references_are_accepted() -> None:
    assert DIGEST_REF_RE.match(f"modelshipdevacr01.azurecr.io/modelship/digits:abc-digits-1@{DIGEST}")
    assert not DIGEST_REF_RE.match("modelshipdevacr01.azurecr.io/modelship/digits:latest")
