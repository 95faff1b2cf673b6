"""The Docker CLI wrapper, unit by unit: a stand-in ``docker`` executable records each call and plays
back an answer, so the arguments, the parsing and every error message are checked without an engine.
The wrapper's behaviour against the real engine is covered by the local end-to-end tests.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from delivery import engine
from delivery.engine import DockerError, RunOptions
from tests.delivery.registry import registry_layers

FAKE = '''
import json, os, sys, time
plan = json.loads(open(os.environ["FAKE_DOCKER_PLAN"]).read())
with open(os.environ["FAKE_DOCKER_CALLS"], "a") as calls:
    calls.write(json.dumps({"argv": sys.argv[1:], "buildkit": os.environ.get("DOCKER_BUILDKIT")}) + "\\n")
time.sleep(plan.get("sleep", 0))
if "iid" in plan:
    with open(sys.argv[sys.argv.index("--iidfile") + 1], "w") as f:
        f.write(plan["iid"])
sys.stdout.write(plan.get("stdout", ""))
sys.stderr.write(plan.get("stderr", ""))
sys.exit(plan.get("rc", 0))
'''


class FakeDocker:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.script = tmp_path / "docker"
        self.script.write_text(f"#!{sys.executable}\n{FAKE}")
        self.script.chmod(0o755)
        self.plan_file = tmp_path / "plan.json"
        self.calls_file = tmp_path / "calls.jsonl"
        monkeypatch.setattr(engine, "DOCKER", str(self.script))
        monkeypatch.setenv("FAKE_DOCKER_PLAN", str(self.plan_file))
        monkeypatch.setenv("FAKE_DOCKER_CALLS", str(self.calls_file))
        self.answer()

    def answer(self, **plan: object) -> None:
        self.plan_file.write_text(json.dumps(plan))

    def calls(self) -> list[dict]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]


@pytest.fixture()
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDocker:
    return FakeDocker(tmp_path, monkeypatch)


OPTIONS = RunOptions(memory="512m", cpus="1", env={"MODELSHIP_WORKERS": "2"}, health_start_period=30)


def test_a_failed_command_names_itself_and_the_end_of_its_output(fake: FakeDocker) -> None:
    fake.answer(rc=3, stderr="".join(f"line{i}\n" for i in range(1, 8)))
    failed = r"docker image inspect --format \{\{\.Id\}\} x failed \(3\): line3 \| line4 \| .* \| line7$"
    with pytest.raises(DockerError, match=failed):
        engine.image_id("x")
    assert engine.image_exists("x") is False  # check=False: a status, not an error


def test_a_missing_cli_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "DOCKER", str(tmp_path / "no-docker"))
    with pytest.raises(DockerError, match=r"no-docker not found: run scripts/bootstrap\.sh"):
        engine.docker("info")
    assert engine.engine_available() is False


def test_a_command_that_hangs_is_cut_at_its_timeout(fake: FakeDocker) -> None:
    fake.answer(sleep=60)
    with pytest.raises(DockerError, match=r"docker pull -q r did not finish within 1 s"):
        engine.docker("pull", "-q", "r", timeout=1)
    assert engine.pull("r", timeout=1) is False


def test_push_reads_the_digest_from_the_cli_then_from_repo_digests(fake: FakeDocker) -> None:
    fake.answer(stdout="The push refers to repository [127.0.0.1:5000/m]\n"
                       "r1: digest: sha256:abc size: 1234\n")
    assert engine.push("127.0.0.1:5000/m:r1", "127.0.0.1:5000/m") == "sha256:abc"
    fake.answer(stdout='["other/m@sha256:111", "127.0.0.1:5000/m@sha256:222"]\n')
    assert engine.push("127.0.0.1:5000/m:r1", "127.0.0.1:5000/m") == "sha256:222"
    fake.answer(stdout="[]\n")
    with pytest.raises(DockerError, match=r"pushed 127\.0\.0\.1:5000/m:r1 but found no digest"):
        engine.push("127.0.0.1:5000/m:r1", "127.0.0.1:5000/m")


def test_run_options_are_the_pods_security_context_and_limits() -> None:
    args = OPTIONS.args()
    joined = " ".join(args)
    assert "--user 10001:10001 --read-only --tmpfs /tmp:rw,size=64m" in joined
    assert "--cap-drop ALL --security-opt no-new-privileges" in joined
    assert "--memory 512m --memory-swap 512m --cpus 1" in joined  # no swap beyond the limit
    assert args[args.index("-e") + 1] == "MODELSHIP_WORKERS=2"
    assert args[-2:] == ["--health-start-period", "30s"]
    assert "--health-start-period" not in RunOptions(memory="1g", cpus="2").args()


def test_a_container_is_created_on_loopback_with_its_labels_then_the_image(fake: FakeDocker) -> None:
    fake.answer(stdout="c0ffee\n")
    created = engine.create_container("img@sha256:1", "svc", 0, OPTIONS, {"modelship.deployment": "d"})
    assert created == "c0ffee"
    argv = fake.calls()[-1]["argv"]
    assert argv[:5] == ["create", "--name", "svc", "-p", "127.0.0.1::8080"]  # 0: Docker picks the port
    assert argv[-3:] == ["--label", "modelship.deployment=d", "img@sha256:1"]
    engine.run_container("img", "svc", 18080, OPTIONS, {})
    assert fake.calls()[-1]["argv"][:6] == ["run", "-d", "--name", "svc", "-p", "127.0.0.1:18080:8080"]


def test_published_port_is_read_from_the_loopback_binding(fake: FakeDocker) -> None:
    ports = {"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": "1"},
                          {"HostIp": "127.0.0.1", "HostPort": "43123"}]}
    fake.answer(stdout=json.dumps([{"NetworkSettings": {"Ports": ports}}]))
    assert engine.published_port("svc", 8080) == 43123
    with pytest.raises(DockerError, match="container svc publishes no loopback port for 9090/tcp"):
        engine.published_port("svc", 9090)
    fake.answer(rc=1, stderr="No such container: svc")
    assert engine.container_state("svc") is None
    calls = len(fake.calls())
    state = {"Name": "/svc", "NetworkSettings": {"Ports": ports}}
    assert engine.published_port(state, 8080) == 43123  # a state in hand is not inspected again
    with pytest.raises(DockerError, match="container svc publishes no loopback port for 9090/tcp"):
        engine.published_port(state, 9090)
    assert len(fake.calls()) == calls


def test_build_uses_buildkit_and_returns_the_image_id(fake: FakeDocker, tmp_path: Path) -> None:
    fake.answer(iid="sha256:feed", stdout="#1 [internal] load build definition\n")
    iid = engine.build(tmp_path, tmp_path / "Dockerfile", {"REVISION": "r1"}, ["m:r1"], {"k": "v"},
                       echo=False)
    assert iid == "sha256:feed"
    call = fake.calls()[-1]
    assert call["buildkit"] == "1"
    argv = call["argv"]
    assert argv[:2] == ["build", "--progress=plain"] and argv[-1] == str(tmp_path)
    for flag, value in (("--build-arg", "REVISION=r1"), ("--label", "k=v"), ("-t", "m:r1")):
        assert argv[argv.index(flag) + 1] == value
    fake.answer(rc=1, stdout="".join(f"step {i}\n" for i in range(40)))
    with pytest.raises(DockerError, match=r"(?s)docker build failed:\nstep 10\n.*step 39$"):
        engine.build(tmp_path, tmp_path / "Dockerfile", {}, ["m:r1"], echo=False)


@pytest.fixture()
def registry() -> Iterator[str]:
    """A registry answering one manifest and its config (two history steps, three layers)."""
    blobs = {
        "/v2/m/manifests/r1": {
            "config": {"digest": "sha256:c"},
            "layers": [{"digest": "sha256:l0"}, {"digest": "sha256:l1"}, {"digest": "sha256:l2"}],
        },
        "/v2/m/blobs/sha256:c": {"history": [{"created_by": "COPY model"}, {"created_by": "ENV A=1",
                                                                           "empty_layer": True},
                                             {"created_by": "COPY modelserver"}]},
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(blobs[self.path]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_registry_layers_pair_each_blob_with_its_step_base_first(registry: str) -> None:
    assert registry_layers(registry, "m", "r1") == [
        ("<base>", "sha256:l0"), ("COPY model", "sha256:l1"), ("COPY modelserver", "sha256:l2"),
    ]
