"""ImageTest: the container test by digest sits in the graph between the image build and the workload."""

from __future__ import annotations

import shlex
from pathlib import Path

import pulumi
import pytest

from components import testing
from components.image_test import COMMAND, ImageTest, ImageTestArgs, verified_image
from components.rollout import ROLLOUT_TYPE as ROLLOUT
from components.stack import build_stack
from components.testing import RecordingMocks, StackRun, install_mocks, one, run_stack
from tests.components.conftest import make_project, make_settings

COMMAND_TYPE = "command:local:Command"



@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> StackRun:
    root = make_project(tmp_path_factory.mktemp("imagetest") / "project")
    return run_stack(make_settings(cpuLimit="750m"), project_root=root)


def _test_command(run: StackRun):
    (test,) = [r for r in testing.by_type(run, COMMAND_TYPE) if r.inputs["create"].startswith(COMMAND)]
    return test


def _container(run: StackRun) -> dict:
    return one(run, ROLLOUT).inputs["spec"]["template"]["spec"]["containers"][0]


def test_the_workload_runs_the_image_the_test_verified(run: StackRun) -> None:
    image = one(run, "docker-build:index:Image")
    test = _test_command(run)
    pushed = image.outputs["ref"]
    assert test.inputs["environment"] == {"MODELSHIP_IMAGE": pushed}
    assert test.inputs["triggers"] == [pushed]  # a new digest replaces the test: it runs again
    assert _container(run)["image"] == pushed
    assert run.outputs["imageRef"] == pushed
    assert run.outputs["verifiedDigest"] == image.outputs["digest"]
    # Who signed the model, as the container test's server reported it (the mocks' fixed answer).
    signer = "ecdsa-p256:0123456789abcdef"
    assert run.outputs["modelSigner"] == signer == run.outputs["release"]["modelSigner"]
    # Created after the push, and the Rollout after the test (its image is the test's output).
    assert image.urn in test.dependencies
    assert test.urn in one(run, ROLLOUT).dependencies


def test_the_test_runs_the_pod_limits_and_checks_the_model(run: StackRun) -> None:
    create = _test_command(run).inputs["create"]
    argv = shlex.split(create)
    assert create.startswith(f'{COMMAND} --image "$MODELSHIP_IMAGE" ')
    limits = _container(run)["resources"]["limits"]
    startup = _container(run)["startupProbe"]
    flags = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert flags == {"--model": "digits", "--version": "2.1.0", "--memory": limits["memory"],
                     "--cpu": limits["cpu"], "--startup-seconds": flags["--startup-seconds"]}
    assert limits["cpu"] == "750m"
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert int(flags["--startup-seconds"]) <= budget


def test_verified_image_accepts_only_its_own_confirmation() -> None:
    ref = "acr.azurecr.io/modelship/digits:r-digits-1@sha256:" + "a" * 64
    assert verified_image(f"imagetest: pulling\nverified {ref}\n", ref) == ref
    for stdout in ("", "imagetest: FAILED", f"verified {ref[:-1]}b", f"verified {ref}\nmore"):
        with pytest.raises(ValueError, match="did not confirm it"):
            verified_image(stdout, ref)


class _FailingTest(RecordingMocks):
    """The container test 'runs' but does not confirm the image (what a failing run leaves)."""

    def new_resource(self, args):  # type: ignore[override]
        rid, outputs = super().new_resource(args)
        if args.typ == COMMAND_TYPE:
            outputs = {**outputs, "stdout": "imagetest: FAILED: wrong model version"}
        return rid, outputs


def test_an_image_that_is_not_confirmed_never_reaches_a_workload(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project")
    mocks = install_mocks(_FailingTest())

    @pulumi.runtime.test
    def program():
        stack = build_stack(make_settings(), root, revision="r1")
        return stack.image_test.verified_ref

    with pytest.raises(Exception, match="did not confirm it"):
        program()
    assert [r for r in mocks.resources if r.type == COMMAND_TYPE]
    assert not [r for r in mocks.resources if r.type == ROLLOUT]


def test_startup_budget_is_bounded() -> None:
    with pytest.raises(ValueError, match="startup_seconds must be 1-3600"):
        ImageTestArgs(image="x@sha256:" + "0" * 64, model_name="digits", model_version="1",
                      memory_limit="640Mi", cpu_limit="1", startup_seconds=0)
    assert ImageTest.__doc__ and testing  # the component is importable without the runtime
