"""The server image, for real: build it, run it locked down (read-only root, /tmp tmpfs, uid 10001, no
capabilities, 512 MiB) and infer. Skips only when no Docker engine is reachable and neither CI nor
MODELSHIP_REQUIRE_DOCKER is set; then it fails instead."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sklearn.datasets import load_digits

from components.build_spec import stage_contract
from modelship_contract.signature import sign
from modelstore.signing import export_trusted_keys
from tests.app.modelserver_process import REPO, free_port
from tests.needs import unavailable
from training.train_digits import train

pytestmark = pytest.mark.docker
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else (shutil.which("docker") or "docker")


def docker(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def engine() -> str:
    try:
        ok = docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        unavailable(f"no Docker engine reachable with {DOCKER}")
    return DOCKER


@pytest.fixture(scope="module")
def image(engine: str, base_image: str, tmp_path_factory: pytest.TempPathFactory,
          signing_keys) -> str:
    """Build from a copy of app/ with a freshly trained model, so the shared app/model is left alone.

    On the local base image (the session fixture builds it if missing): never a pull from Docker Hub.
    """
    context = tmp_path_factory.mktemp("context")
    app = REPO / "app"
    for name in ("Dockerfile", ".dockerignore", "requirements.txt"):
        shutil.copy(app / name, context / name)
    shutil.copytree(app / "wheels", context / "wheels")
    shutil.copytree(
        app / "modelserver", context / "modelserver", ignore=shutil.ignore_patterns("__pycache__")
    )
    stage_contract(context)
    manifest = train(context / "model", name="digits", version="1.0.0", source_revision="imagetest")
    # As the model store hands it over: signed, with the keys the build and the server trust in trust/.
    sign(context / "model", signing_keys.private_key)
    export_trusted_keys(context / "trust", signing_keys.trusted_dir)
    # As a build host with umask 077 leaves them: the image must still let uid 10001 read them.
    for path in [*context.joinpath("model").iterdir(), *context.joinpath("modelserver").rglob("*.py"),
                 *context.joinpath("modelship_contract").glob("*.py")]:
        path.chmod(0o600)
    tag = f"modelship/server-test:{uuid.uuid4().hex[:8]}"
    build = docker(
        "build",
        "-q",
        "--force-rm",  # a failed step must not leave its container behind
        "-t",
        tag,
        "--build-arg",
        f"BASE_IMAGE={base_image}",
        "--build-arg",
        "REVISION=imagetest",
        "--build-arg",
        "MODEL_NAME=digits",
        "--build-arg",
        "MODEL_VERSION=1.0.0",
        "--build-arg",
        f"MODEL_SHA256={manifest.sha256}",
        str(context),
        check=False,
        timeout=900,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    yield tag
    docker("rmi", "-f", tag, check=False)


def test_image_metadata(image: str) -> None:
    config = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert "8080/tcp" in config["ExposedPorts"]
    assert config["Healthcheck"]["Test"][0] == "CMD"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.revision"] == "imagetest"
    assert labels["io.modelship.model.name"] == "digits"
    assert labels["io.modelship.model.version"] == "1.0.0"
    assert len(labels["io.modelship.model.sha256"]) == 64


def test_runs_locked_down_and_infers(image: str) -> None:
    port = free_port()
    name = f"modelship-test-{uuid.uuid4().hex[:8]}"
    docker(
        "run",
        "-d",
        "--name",
        name,
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--user",
        "10001",
        "--cap-drop",
        "ALL",
        "--memory",
        "512m",
        "-p",
        f"127.0.0.1:{port}:8080",
        image,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("container not ready in 60 s:\n" + docker("logs", name, check=False).stdout[-3000:])
        row = load_digits().data[0].tolist()
        body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": row}]}
        result = httpx.post(f"{url}/v2/models/digits/infer", json=body, timeout=10).json()
        label = next(o for o in result["outputs"] if o["name"] == "label")
        assert label["data"] == [0]
        bad = httpx.post(
            f"{url}/v2/models/digits/infer", json={"inputs": [{**body["inputs"][0], "shape": [1, 8]}]}
        )
        assert bad.status_code == 400 and "expected [-1, 64]" in bad.json()["error"]
        assert "modelship_model_info{" in httpx.get(f"{url}/metrics").text
        # Docker's HEALTHCHECK (python stdlib, read-only root) reports healthy.
        deadline = time.monotonic() + 40
        status = ""
        while time.monotonic() < deadline:
            status = docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
            if status == "healthy":
                break
            time.sleep(1)
        assert status == "healthy"
        docker("stop", "-t", "20", name)
        assert docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
        assert "shutdown complete" in docker("logs", name).stdout
    finally:
        docker("rm", "-f", name, check=False)


def test_the_canary_analysis_job_runs_in_the_released_image(image: str) -> None:
    """The cloud AnalysisTemplate's Job runs the analysis CLI in this image, as its pod would run
    (read-only root, uid 10001, no capabilities): the command must start there and fail clearly
    without the workload-identity environment the AKS webhook injects (exit 4, unreachable)."""
    from components.rollout import analysis_command
    from modelship_contract.canary import DEFAULT

    command = [arg.replace("{{args.canary-hash}}", "abc123").replace("{{args.stable-hash}}", "def456")
               for arg in analysis_command(DEFAULT, "https://amw.westeurope.prometheus.monitor.azure.com")]
    proc = docker("run", "--rm", "--read-only", "--user", "10001", "--cap-drop", "ALL",
                  "--security-opt", "no-new-privileges", "--network", "none", "--memory", "128m",
                  "--entrypoint", command[0], image, *command[1:], check=False, timeout=120)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "workload identity is not set up in this pod" in proc.stderr
    assert "AZURE_FEDERATED_TOKEN_FILE" in proc.stderr
