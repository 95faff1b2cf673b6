"""ImageSbom: the SBOM is stored in ACR after the container test passed, and before the workload runs."""

from __future__ import annotations

import shlex
from pathlib import Path

import pulumi
import pytest

from components.image_sbom import COMMAND, sbom_digest
from components.image_test import COMMAND as TEST_COMMAND
from components.rollout import ROLLOUT_TYPE as ROLLOUT
from components.stack import build_stack
from components.testing import RecordingMocks, StackRun, by_type, install_mocks, one, run_stack
from delivery import sbom
from tests.components.conftest import make_project, make_settings

COMMAND_TYPE = "command:local:Command"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> StackRun:
    root = make_project(tmp_path_factory.mktemp("imagesbom") / "project")
    return run_stack(make_settings(), project_root=root)


def _commands(run: StackRun) -> tuple:
    (test,) = [r for r in by_type(run, COMMAND_TYPE) if r.inputs["create"].startswith(TEST_COMMAND)]
    (store,) = [r for r in by_type(run, COMMAND_TYPE) if r.inputs["create"].startswith(COMMAND)]
    return test, store


def test_the_sbom_step_takes_only_the_verified_image_and_the_workload_waits_for_it(run: StackRun) -> None:
    test, store = _commands(run)
    verified = one(run, "docker-build:index:Image").outputs["ref"]
    settings = make_settings()
    assert store.inputs["environment"] == {
        "MODELSHIP_IMAGE": verified,
        "MODELSHIP_ACR": settings.registry_name,
    }
    assert store.inputs["triggers"] == [verified]  # a new digest, a new SBOM
    # After the container test (its image input is the test's output), before the Rollout.
    assert test.urn in store.dependencies
    assert store.urn in one(run, ROLLOUT).dependencies
    assert run.outputs["sbomDigest"] == sbom_digest(store.outputs["stdout"], verified)
    assert run.outputs["sbomDigest"].startswith("sha256:")
    assert run.outputs["release"]["sbomDigest"] == run.outputs["sbomDigest"]  # what prod imports


def test_no_credential_is_an_input_and_the_cli_accepts_the_command(run: StackRun) -> None:
    _, store = _commands(run)
    # The token is fetched by the command at run time: the recorded inputs (the state) hold none.
    assert set(store.inputs["environment"]) == {"MODELSHIP_IMAGE", "MODELSHIP_ACR"}
    assert not {"password", "token", "secret"} & set(store.inputs["create"].lower().replace("-", " ").split())
    argv = shlex.split(
        store.inputs["create"]
        .replace("$MODELSHIP_IMAGE", store.inputs["environment"]["MODELSHIP_IMAGE"])
        .replace("$MODELSHIP_ACR", store.inputs["environment"]["MODELSHIP_ACR"])
    )
    assert argv[:3] == ["python", "-m", "delivery.sbom"]
    args = sbom.cli_parser().parse_args(argv[3:])
    assert (args.command, args.acr, args.username, args.sbom) == (
        "push",
        make_settings().registry_name,
        None,
        None,
    )


def test_the_digest_is_read_only_from_a_successful_push() -> None:
    ref = "acr.azurecr.io/modelship/digits:r1@sha256:" + "a" * 64
    good = "sha256:" + "b" * 64
    assert sbom_digest(f"sbom: 40 components stored\nsbom {good}\n", ref) == good
    for stdout in ("", "sbom: FAILED: refused", f"sbom {good}\nmore", "sbom sha256:xyz", f"sbom  {good}x"):
        with pytest.raises(ValueError, match="did not report a stored SBOM"):
            sbom_digest(stdout, ref)


class _NoSbom(RecordingMocks):
    """The SBOM step 'runs' but reports no stored SBOM (what a failed push leaves)."""

    def new_resource(self, args):  # type: ignore[override]
        rid, outputs = super().new_resource(args)
        if args.typ == COMMAND_TYPE and str(args.inputs.get("create", "")).startswith(COMMAND):
            outputs = {**outputs, "stdout": "sbom: FAILED: registry refused the credentials"}
        return rid, outputs


def test_an_image_without_a_stored_sbom_never_reaches_a_workload(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project")
    mocks = install_mocks(_NoSbom())

    @pulumi.runtime.test
    def program():
        stack = build_stack(make_settings(), root, revision="r1")
        return stack.image_sbom.image_ref

    with pytest.raises(Exception, match="did not report a stored SBOM"):
        program()
    assert len([r for r in mocks.resources if r.type == COMMAND_TYPE]) == 2
    assert not [r for r in mocks.resources if r.type == ROLLOUT]
