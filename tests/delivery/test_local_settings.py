"""Settings of the local flow and the source revision that goes into the image tag (no Docker)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from delivery.engine import RunOptions
from delivery.local import LocalSettings, context_digest, source_revision


def test_defaults_match_the_readme() -> None:
    s = LocalSettings.from_env({})
    assert (s.port, s.registry_port, s.azurite_port) == (8080, 5000, 10000)
    assert s.container == "modelship-digits"
    assert s.context.name == "app"
    assert s.state_dir.name == ".local"


def test_run_options_are_the_deployments_security_settings() -> None:
    args = LocalSettings.from_env({"MODELSHIP_MEMORY": "256m", "MODELSHIP_CPUS": "0.5"}).run_options.args()
    joined = " ".join(args)
    assert "--read-only" in args
    assert "--user 10001:10001" in joined
    assert "--cap-drop ALL" in joined
    assert "--security-opt no-new-privileges" in joined
    assert "--memory 256m" in joined and "--cpus 0.5" in joined
    assert "--tmpfs /tmp:rw" in joined
    assert RunOptions(memory="1g", cpus="2").container_port == 8080


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODELSHIP_PORT": "http"}, "MODELSHIP_PORT must be a port number, got 'http'"),
        ({"MODELSHIP_PORT": "80"}, "MODELSHIP_PORT must be a port in 1024-65535, got 80"),
        ({"MODELSHIP_REGISTRY_PORT": "8080"}, "must differ"),
        ({"MODELSHIP_INSTANCE": "My_App"}, "MODELSHIP_INSTANCE 'My_App' is not allowed: use 1-31 lowercase"),
        ({"MODELSHIP_MEMORY": "512MB"}, "MODELSHIP_MEMORY '512MB' is not allowed: use a number with k"),
        ({"MODELSHIP_CPUS": "0"}, "MODELSHIP_CPUS '0' is not allowed"),
        ({"MODELSHIP_REPOSITORY": "Modelship/Digits"}, "MODELSHIP_REPOSITORY 'Modelship/Digits' is not"),
        ({"MODELSHIP_MODEL": "digits@1.0.0@2"}, "MODEL='digits@1.0.0@2' is not allowed: .* digits@1.1.0"),
        ({"MODELSHIP_MODEL": "digits@../x"}, "MODEL='digits@../x' is not allowed"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        LocalSettings.from_env(env)


def test_model_names_a_version_to_deploy() -> None:
    default = LocalSettings.from_env({})
    assert (default.model, default.model_version, default.model_ref) == ("digits", "latest", "digits@latest")
    pinned = LocalSettings.from_env({"MODELSHIP_MODEL": "digits@1.1.0"})
    assert (pinned.model, pinned.model_version) == ("digits", "1.1.0")
    assert pinned.container == "modelship-digits", "the container name never carries the version"


def test_make_up_model_reaches_the_cli(tmp_path: Path) -> None:
    """`make up MODEL=x` passes --model x; a bad one is refused before anything starts (exit 1)."""
    from delivery.local import ROOT

    dry = subprocess.run(["make", "-n", "-C", str(ROOT), "up", "MODEL=digits@1.1.0"],
                         capture_output=True, text=True, check=True).stdout
    assert '-m delivery.local up --model "digits@1.1.0"' in dry
    bad = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "delivery.local", "up",
                          "--model", "digits@no/good"], cwd=ROOT, capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "MODELSHIP_STATE_DIR": str(tmp_path)}, timeout=60)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "MODEL='digits@no/good' is not allowed" in bad.stderr


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "app"
    (ctx / "model").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (ctx / "server.py").write_text("print(1)\n")
    (ctx / "model" / "model.onnx").write_bytes(b"weights")
    return ctx


def test_revision_follows_code_not_model(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    before = context_digest(ctx)
    (ctx / "model" / "model.onnx").write_bytes(b"other weights")
    assert context_digest(ctx) == before, "a model change must not change the code revision"
    (ctx / "server.py").write_text("print(2)\n")
    assert context_digest(ctx) != before
    rev = source_revision(ctx)
    assert rev.startswith("dev-") and len(rev) == 16


def test_revision_is_the_git_sha_when_committed(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    git = ["git", "-C", str(tmp_path), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    sha = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], check=True, capture_output=True,
                         text=True).stdout.strip()
    assert source_revision(ctx) == sha
    (ctx / "server.py").write_text("print(3)\n")
    assert source_revision(ctx).startswith("dev-")


def test_a_second_up_of_the_same_deployment_is_refused_while_one_runs(tmp_path: Path) -> None:
    import fcntl

    from delivery.local import DeliveryError, up

    settings = LocalSettings.from_env({"MODELSHIP_STATE_DIR": str(tmp_path), "MODELSHIP_INSTANCE": "locked"})
    with open(tmp_path / "up-locked.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(DeliveryError, match="another `up` of locked is running"):
            up(settings)


def test_k8s_quantities_become_docker_limits() -> None:
    from delivery.local import k8s_cpu_to_docker, k8s_memory_to_docker

    assert k8s_memory_to_docker("512Mi") == "512m"
    assert k8s_memory_to_docker("2Gi") == "2g"
    assert k8s_cpu_to_docker("500m") == "0.5"
    assert k8s_cpu_to_docker("1") == "1"
    with pytest.raises(ValueError, match="memory quantity '1G' is not one of"):
        k8s_memory_to_docker("1G")


def test_missing_wheels_lists_pins_without_a_wheel(tmp_path: Path) -> None:
    from delivery.local import missing_wheels

    (tmp_path / "wheels").mkdir()
    (tmp_path / "requirements.txt").write_text(
        "# pinned\nprometheus-client==0.26.0\nnumpy==2.4.6  # direct\ntyping-extensions==4.16.0\n"
    )
    (tmp_path / "wheels" / "prometheus_client-0.26.0-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "wheels" / "numpy-2.4.5-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    assert missing_wheels(tmp_path) == ["numpy==2.4.6", "typing-extensions==4.16.0"]
