"""A thin wrapper over the Docker Engine CLI (``/usr/bin/docker``) for the local delivery flow.

The CLI, not the SDK, because ``DOCKER_BUILDKIT=1 docker build`` gives BuildKit's content-addressed
layer cache and its plain progress output, the same builder that pulumi-docker-build drives in the
cloud flow. Every call is explicit about its arguments; failures raise :class:`DockerError` with the
command and the tail of its output.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelship_contract import image as image_contract

DOCKER = os.environ.get("MODELSHIP_DOCKER", "/usr/bin/docker")


class DockerError(RuntimeError):
    """A docker command failed; the message holds the command and the end of its output."""


def docker(*args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            [DOCKER, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise DockerError(f"docker {' '.join(args)} did not finish within {timeout:.0f} s") from None
    except FileNotFoundError:
        raise DockerError(f"{DOCKER} not found: run scripts/bootstrap.sh") from None
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise DockerError(f"docker {' '.join(args)} failed ({proc.returncode}): " + " | ".join(tail))
    return proc


def engine_available() -> bool:
    try:
        return docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=20).returncode == 0
    except DockerError:
        return False


def image_exists(ref: str) -> bool:
    return docker("image", "inspect", ref, check=False).returncode == 0


def image_id(ref: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def image_size(ref: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())


def build(
    context: Path,
    dockerfile: Path,
    build_args: Mapping[str, str],
    tags: Sequence[str],
    labels: Mapping[str, str] | None = None,
    echo: bool = True,
    no_cache: bool = False,
    log_file: Path | None = None,
) -> str:
    """Build with BuildKit, streaming its progress (``echo``) and/or into ``log_file``; return the
    image id."""
    with tempfile.TemporaryDirectory() as tmp:
        iidfile = Path(tmp) / "iid"
        cmd = [DOCKER, "build", "--progress=plain", "-f", str(dockerfile), "--iidfile", str(iidfile)]
        if no_cache:
            cmd.append("--no-cache")
        for key, value in build_args.items():
            cmd += ["--build-arg", f"{key}={value}"]
        for key, value in (labels or {}).items():
            cmd += ["--label", f"{key}={value}"]
        for tag in tags:
            cmd += ["-t", tag]
        cmd.append(str(context))
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert proc.stdout is not None
        tail: list[str] = []
        with open(log_file or os.devnull, "a") as log:
            for line in proc.stdout:
                tail = [*tail[-29:], line.rstrip()]
                log.write(line)
                if echo:
                    sys.stdout.write(f"  | {line}")
                    sys.stdout.flush()
        if proc.wait() != 0:
            raise DockerError("docker build failed:\n" + "\n".join(tail))
        return iidfile.read_text().strip()


def push(ref: str, repository: str) -> str:
    """Push ``ref`` and return its manifest digest (``sha256:...``) in ``repository``."""
    proc = docker("push", ref)
    for line in proc.stdout.splitlines():
        # "<tag>: digest: sha256:... size: 1234" is the CLI's last line on success.
        if "digest: sha256:" in line:
            return line.split("digest: ", 1)[1].split()[0]
    digests = json.loads(docker("image", "inspect", "--format", "{{json .RepoDigests}}", ref).stdout)
    for entry in digests or []:
        if entry.startswith(repository + "@"):
            return entry.split("@", 1)[1]
    raise DockerError(f"pushed {ref} but found no digest for {repository}")


def pull(ref: str, timeout: float) -> bool:
    try:
        return docker("pull", "-q", ref, check=False, timeout=timeout).returncode == 0
    except DockerError:
        return False


@dataclass(frozen=True)
class RunOptions:
    """How a model container runs: the Deployment's security context and resource limits."""

    memory: str
    """Memory limit in Docker's notation (``512m``); the Deployment's ``limits.memory``."""
    cpus: str
    """CPU limit (``1`` or ``0.5``); the Deployment's ``limits.cpu``."""
    user: str = image_contract.USER
    """Non-root uid:gid, as ``runAsUser``/``runAsGroup``."""
    container_port: int = image_contract.PORT
    tmpfs_size: str = "64m"
    """Size of the writable /tmp, as the pod's ``emptyDir`` size limit."""
    env: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: {image_contract.MODEL_DIR_ENV: image_contract.MODEL_DIR})
    """Environment the Deployment sets on the container (never secrets); by default where the model is."""
    health_start_period: int | None = None
    """Seconds the image's HEALTHCHECK failures do not count (the model's start-up budget); None:
    the image's own."""

    def args(self) -> list[str]:
        # Same as the pod's securityContext: non-root, read-only root filesystem with a writable
        # /tmp (an emptyDir there), all capabilities dropped, no privilege escalation.
        return [
            "--user", self.user, "--read-only", "--tmpfs", f"/tmp:rw,size={self.tmpfs_size}",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--memory", self.memory, "--memory-swap", self.memory, "--cpus", self.cpus,
            *[arg for key, value in self.env.items() for arg in ("-e", f"{key}={value}")],
            *(["--health-start-period", f"{self.health_start_period}s"] if self.health_start_period else []),
        ]


def _container_args(
    image: str, name: str, host_port: int, options: RunOptions, labels: Mapping[str, str]
) -> list[str]:
    # host_port 0: Docker picks a free loopback port at start (read it back with published_port).
    published = f"127.0.0.1:{host_port or ''}:{options.container_port}"
    cmd = ["--name", name, "-p", published, *options.args()]
    for key, value in labels.items():
        cmd += ["--label", f"{key}={value}"]
    return [*cmd, image]


def run_container(
    image: str, name: str, host_port: int, options: RunOptions, labels: Mapping[str, str]
) -> str:
    return docker("run", "-d", *_container_args(image, name, host_port, options, labels)).stdout.strip()


def create_container(
    image: str, name: str, host_port: int, options: RunOptions, labels: Mapping[str, str]
) -> str:
    """Create (not start) a container. Docker binds the host port only at start, so this succeeds
    while another container still serves that port: the image reference and every option are
    checked before anything running is touched."""
    return docker("create", *_container_args(image, name, host_port, options, labels)).stdout.strip()


def published_port(container: str | Mapping, container_port: int) -> int:
    """The host port on 127.0.0.1 that a running container publishes ``container_port`` on.

    ``container`` is its name (inspected here) or its ``docker inspect`` state already in hand."""
    state = container_state(container) if isinstance(container, str) else container
    name = container if isinstance(container, str) else str(container.get("Name", "?")).lstrip("/")
    bindings = ((state or {}).get("NetworkSettings", {}).get("Ports") or {}).get(f"{container_port}/tcp")
    for binding in bindings or []:
        if binding.get("HostIp") == "127.0.0.1" and binding.get("HostPort"):
            return int(binding["HostPort"])
    raise DockerError(f"container {name} publishes no loopback port for {container_port}/tcp")


def container_state(name: str) -> dict | None:
    proc = docker("container", "inspect", name, check=False)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)[0]


def describe_exit(state: Mapping) -> str | None:
    """Why a container is no longer running (None while it runs), from ``docker inspect``'s State.

    The kernel's out-of-memory kill is named as such: Docker records it as ``OOMKilled`` (any
    process of the container killed for the memory limit) and the status is then usually 137.
    """
    st = state.get("State") or {}
    if st.get("Running") or st.get("Status") == "created":
        return None
    code = st.get("ExitCode")
    if st.get("OOMKilled"):
        return f"it was killed for running out of memory (State.OOMKilled, exit status {code})"
    if code == 137:
        return "it was killed with SIGKILL (exit status 137), not by its own choice"
    error = f": {st['Error']}" if st.get("Error") else ""
    return f"it exited with status {code}{error}"


def containers_with_label(label: str) -> list[str]:
    out = docker("ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}").stdout
    return [n for n in out.split() if n]


def remove_container(name: str) -> None:
    docker("rm", "-f", name, check=False)


def remove_containers_with_label(label: str) -> list[str]:
    """Remove every container carrying ``label`` (a stage's containers); return their names.
    Nothing to do, and no error, when no Docker Engine answers."""
    if not engine_available():
        return []
    names = containers_with_label(label)
    for name in names:
        remove_container(name)
    return names


def logs_tail(name: str, lines: int = 20) -> str:
    proc = docker("logs", "--tail", str(lines), name, check=False)
    return (proc.stdout + proc.stderr).strip()
