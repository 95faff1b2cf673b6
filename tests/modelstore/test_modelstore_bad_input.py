"""Every bad input a new user tried, through the real command line: a clear error, a documented exit
code, and never a traceback. Each case runs ``python -m modelstore`` in a fresh process, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from modelstore.errors import EXIT_CODES

pytestmark = pytest.mark.azurite

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Case:
    args: Callable[[Path], list[str]]
    """The command line, given the test's tmp_path (set up by ``setup`` first)."""
    exit_code: int
    message: str
    setup: Callable[..., None] = lambda tmp, **_: None
    env: dict[str, str | None] | None = None


def model_dir(tmp: Path, name: str = "m") -> Path:
    from tests.modelstore.conftest import write_model_dir

    write_model_dir(tmp / name, "digits", "1", b"model bytes")
    return tmp / name


def non_utf8_manifest(tmp: Path, **_) -> None:
    (model_dir(tmp) / "manifest.json").write_bytes(b'{"name": "d\xe9j\xe0"}')


def manifest_is_a_directory(tmp: Path, **_) -> None:
    m = model_dir(tmp) / "manifest.json"
    m.unlink()
    m.mkdir()


def manifest_symlink_loop(tmp: Path, **_) -> None:
    m = model_dir(tmp) / "manifest.json"
    m.unlink()
    m.symlink_to(m)


def manifest_with_unknown_field(tmp: Path, **_) -> None:
    m = model_dir(tmp) / "manifest.json"
    m.write_text(json.dumps({**json.loads(m.read_text()), "metrcis": {"accuracy": 0.9}}))


def parent_is_a_file(tmp: Path, **_) -> None:
    (tmp / "afile").write_text("x")


def read_only_mount(tmp: Path, **_) -> None:
    (tmp / "ro").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(tmp / "ro")], check=True)


def cache_is_a_file(tmp: Path, **_) -> None:
    (tmp / "cache").write_text("not a directory")


def pointer_leads_elsewhere(tmp: Path, *, azurite, container, store, **_) -> None:
    store.publish(model_dir(tmp, "published"))
    cc = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(container)
    doc = json.loads(cc.get_blob_client("digits/latest.json").download_blob().readall())
    doc["latest"]["version"] = "../digits/1"
    cc.upload_blob("digits/latest.json", json.dumps(doc), overwrite=True)


CASES = {
    "http account URL on loopback": Case(
        lambda t: ["list", "--account-url", "http://127.0.0.1:10000/devstoreaccount1"], 2,
        "must use https: Entra ID sign-in is never sent over plain http"),
    "http account URL": Case(lambda t: ["list", "--account-url", "http://acct.blob.core.windows.net"], 2,
                             "must use https"),
    "manifest not UTF-8": Case(lambda t: ["publish", str(t / "m")], 2, "manifest.json is not UTF-8 text",
                               non_utf8_manifest),
    "manifest is a directory": Case(lambda t: ["publish", str(t / "m")], 2,
                                    "manifest.json is a directory; it must be a JSON file",
                                    manifest_is_a_directory),
    "manifest is a symlink loop": Case(lambda t: ["publish", str(t / "m")], 2,
                                       "manifest.json cannot be read: Too many levels of symbolic links",
                                       manifest_symlink_loop),
    "manifest with an unknown field": Case(lambda t: ["publish", str(t / "m")], 2,
                                           "unknown field(s) 'metrcis'; schema 1 allows:",
                                           manifest_with_unknown_field),
    "destination's parent is a file": Case(lambda t: ["fetch", "digits", str(t / "afile" / "model")], 2,
                                           "afile is a file, not a directory", parent_is_a_file),
    "destination under /proc": Case(lambda t: ["fetch", "digits", "/proc/modelship-model"], 2,
                                    "cannot write the destination /proc/modelship-model"),
    "destination under /sys": Case(lambda t: ["fetch", "digits", "/sys/modelship-model"], 2,
                                   "cannot write the destination /sys/modelship-model"),
    "destination on a read-only mount": Case(lambda t: ["fetch", "digits", str(t / "ro" / "model")], 2,
                                             "Read-only file system", read_only_mount),
    "cache directory is a file": Case(
        lambda t: ["fetch", "digits", str(t / "dest"), "--cache-dir", str(t / "cache")], 2,
        "is a file, not a directory", cache_is_a_file),
    "empty version": Case(lambda t: ["show", "digits@"], 2, "has an empty version after '@'"),
    "timeout not a number": Case(lambda t: ["list", "--timeout", "soon"], 2, "--timeout 'soon' is not valid"),
    "timeout from the environment": Case(lambda t: ["list"], 2, "MODELSHIP_STORE_TIMEOUT '-1' is not valid",
                                         env={"MODELSHIP_STORE_TIMEOUT": "-1"}),
    "https account URL without a credential": Case(
        lambda t: ["list", "--account-url", "https://modelshipnocredential.blob.core.windows.net"], 5,
        "no Azure credential found for https://modelshipnocredential.blob.core.windows.net"),
    "pointer naming ../digits/1": Case(lambda t: ["fetch", "digits", str(t / "dest")], 4,
                                       "latest.json in container", pointer_leads_elsewhere),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_is_a_clear_error_with_its_exit_code_and_no_traceback(
    case, tmp_path, azurite, container, store, store_env
):
    case.setup(tmp_path, azurite=azurite, container=container, store=store)
    env = {**store_env, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'app'}"}
    # No Azure identity of the machine's may leak in: "no credential" must be what the test sees.
    identity = ("AZURE_CLIENT", "AZURE_TENANT", "AZURE_FEDERATED", "IDENTITY_", "MSI_")
    for var in [v for v in env if v.startswith(identity)]:
        del env[var]
    for key, value in (case.env or {}).items():
        env.pop(key, None) if value is None else env.__setitem__(key, value)
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "modelstore", *case.args(tmp_path)], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
    finally:
        if (tmp_path / "ro").is_mount():
            subprocess.run(["umount", str(tmp_path / "ro")], check=True)
    elapsed = time.monotonic() - started
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.returncode == case.exit_code, proc.stderr
    assert proc.returncode in EXIT_CODES
    assert case.message in proc.stderr
    assert proc.stderr.startswith("modelship-models: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert elapsed < 15, f"a bad input took {elapsed:.0f} s to report"
