"""The prod stack (Pulumi.prod.yaml) under recording mocks: it never builds, it deploys the digest
dev verified (dev's ``release`` output, checked through a StackReference), imported into prod's
own registry by digest."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pulumi
import pytest
import yaml

from components.promotion import (
    IMPORT,
    IMPORT_SBOM,
    PROMOTION,
    RERUN,
    ROLLBACK,
    Release,
    previous_release,
    release_kind,
    same_release,
)
from components.rollout import ROLLOUT_TYPE as ROLLOUT
from components.stack import build_stack
from components.testing import STACK_REFERENCE, StackRun, by_type, install_mocks, one, run_stack
from settings import Settings, SettingsError, stack_config
from tests.components.conftest import make_project, make_settings

REPO = Path(__file__).resolve().parents[2]
DEV = "organization/modelship/dev"
PROD = "organization/modelship/prod"



def _stack_file(stack: str) -> dict[str, str]:
    return stack_config(yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text()))


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> StackRun:
    root = make_project(tmp_path_factory.mktemp("dev") / "project", version="4.0.0",
                        payload=b"x" * 300_000_000)
    settings = Settings.from_mapping({**_stack_file("dev"), "deployerPrincipalType": "ServicePrincipal"})
    return run_stack(settings, project_root=root)


def _prod_settings(release: dict) -> Settings:
    return Settings.from_mapping({**_stack_file("prod"), "deployerPrincipalType": "ServicePrincipal",
                                  "release": json.dumps(release)})


@pytest.fixture(scope="module")
def prod(dev: StackRun, tmp_path_factory: pytest.TempPathFactory) -> StackRun:
    empty = tmp_path_factory.mktemp("prod") / "project"  # no app/model: prod fetches nothing
    (empty / "app").mkdir(parents=True)
    return run_stack(_prod_settings(dev.outputs["release"]), project_root=empty,
                     stack_outputs={DEV: {"release": dev.outputs["release"]}, PROD: {}}, stack="prod")


def _container(run: StackRun) -> dict:
    return one(run, ROLLOUT).inputs["spec"]["template"]["spec"]["containers"][0]


def _image(run: StackRun) -> str:
    return _container(run)["image"]


def test_dev_exports_the_release_its_container_test_verified(dev: StackRun) -> None:
    release = Release.from_mapping(dev.outputs["release"])
    assert release.image == _image(dev) == dev.outputs["imageRef"]
    assert release.digest == one(dev, "docker-build:index:Image").outputs["digest"]
    assert (release.model, release.model_version, release.model_size) == ("digits", "4.0.0", 300_000_000)


def test_prod_declares_no_image_build_and_no_test(prod: StackRun) -> None:
    assert by_type(prod, "docker-build:index:Image") == []
    assert by_type(prod, "modelship:image:ModelImage") == []
    assert by_type(prod, "modelship:image:ImageTest") == []
    (command,) = by_type(prod, "command:local:Command")
    # The only command: the import of the image and its SBOM, no container test, no SBOM generated.
    assert command.inputs["create"] == f"{IMPORT} && {IMPORT_SBOM}"


def test_prod_runs_dev_digest_imported_into_its_own_registry(dev: StackRun, prod: StackRun) -> None:
    release = Release.from_mapping(dev.outputs["release"])
    command = one(prod, "command:local:Command")
    assert release.sbom_digest == dev.outputs["sbomDigest"]
    assert command.inputs["environment"] == {
        "REGISTRY": "modelshipprodacr01", "TARGET": f"modelship/digits:{release.tag}",
        "SOURCE": f"modelshipdevacr01.azurecr.io/modelship/digits@{release.digest}",
        # The SBOM dev stored beside the image, imported by its digest after the image.
        "SBOM_SOURCE": f"modelshipdevacr01.azurecr.io/modelship/digits@{release.sbom_digest}",
        "SBOM_TARGET": f"modelship/digits:{release.digest.replace(':', '-')}.sbom"}
    assert command.inputs["triggers"] == [release.digest, release.sbom_digest]
    assert prod.outputs["sbomDigest"] == dev.outputs["sbomDigest"]  # what the smoke test shows
    assert _image(prod) == f"modelshipprodacr01.azurecr.io/modelship/digits:{release.tag}@{release.digest}"
    assert prod.outputs["verifiedDigest"] == release.digest == dev.outputs["verifiedDigest"]
    assert prod.outputs["release"] == dev.outputs["release"] and prod.outputs["promotedFrom"] == DEV
    assert prod.outputs["modelSigner"] == dev.outputs["modelSigner"]  # what the smoke test shows
    # The Rollout waits for the import (its image is the import's output) and reads dev's state.
    deploy = one(prod, ROLLOUT)
    assert command.urn in deploy.dependencies
    assert sorted(r.inputs["name"] for r in by_type(prod, STACK_REFERENCE)) == [DEV, PROD]


def test_a_release_recorded_without_an_sbom_imports_the_image_alone(dev: StackRun, tmp_path: Path) -> None:
    older = {k: v for k, v in dev.outputs["release"].items() if k != "sbomDigest"}
    empty = tmp_path / "project"
    (empty / "app").mkdir(parents=True)
    prod = run_stack(_prod_settings(older), project_root=empty,
                     stack_outputs={DEV: {"release": older}, PROD: {}}, stack="prod")
    command = one(prod, "command:local:Command")
    assert command.inputs["create"] == IMPORT
    assert "SBOM_SOURCE" not in command.inputs["environment"] and "sbomDigest" not in prod.outputs


def test_prod_pods_are_sized_for_dev_model_like_dev(dev: StackRun, prod: StackRun) -> None:
    assert _container(prod)["resources"] == _container(dev)["resources"]
    assert one(prod, ROLLOUT).inputs["metadata"]["labels"][
        "modelship.io/model-version"] == "4.0.0"


def test_prod_refuses_a_digest_dev_does_not_run(dev: StackRun, tmp_path: Path) -> None:
    verified = dev.outputs["release"]
    other = dict(verified, digest="sha256:" + "1" * 64,
                 image=verified["image"].split("@")[0] + "@sha256:" + "1" * 64)
    mocks = install_mocks(stack_outputs={DEV: {"release": verified}, PROD: {}}, stack="prod")

    @pulumi.runtime.test
    def program():
        return build_stack(_prod_settings(other), tmp_path, revision="r1").service.url

    with pytest.raises(Exception, match="verified and runs " + verified["digest"]):
        program()
    assert by_type(mocks.resources, ROLLOUT) == []
    assert by_type(mocks.resources, "docker-build:index:Image") == []


def test_a_dev_stack_without_a_release_blocks_prod() -> None:
    release = Release("r.azurecr.io/m/d:t@sha256:" + "2" * 64, "sha256:" + "2" * 64, "digits", "1", 10)
    with pytest.raises(ValueError, match="exports no release: no image has passed its container test"):
        same_release(DEV, None, release)
    same_release(DEV, release.to_output(), release)


@pytest.mark.parametrize(("release", "message"), [
    ("", "required with promoteFrom"),
    ("{not json", "not JSON"),
    (json.dumps({"image": "r.azurecr.io/modelship/digits:latest", "digest": "sha256:" + "3" * 64,
                 "model": "digits", "modelVersion": "1", "modelSize": 10}), "is not pinned by digest"),
    (json.dumps({"image": "r.azurecr.io/m/d@sha256:" + "3" * 64, "digest": "sha256:" + "4" * 64,
                 "model": "digits", "modelVersion": "1", "modelSize": 10}), "does not carry digest"),
    (json.dumps({"image": "r.azurecr.io/m/d@sha256:" + "3" * 64}), "missing: digest, model"),
    (json.dumps({"image": "r.azurecr.io/m/d@sha256:" + "3" * 64, "digest": "sha256:" + "3" * 64,
                 "model": "digits", "modelVersion": "1", "modelSize": 10, "sbomDigest": "latest"}),
     "sbomDigest 'latest' is not a sha256 digest"),
])
def test_bad_release_config_fails_before_any_resource(release: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as exc:
        Settings.from_mapping({**_stack_file("prod"), "release": release})
    assert exc.value.key == "release"


def test_a_release_without_promote_from_is_refused() -> None:
    with pytest.raises(SettingsError, match="set only with promoteFrom"):
        make_settings(release=json.dumps({"image": "r.azurecr.io/m/d@sha256:" + "3" * 64,
                                          "digest": "sha256:" + "3" * 64, "model": "digits",
                                          "modelVersion": "1", "modelSize": 10}))


def test_prod_stack_file_differs_from_dev_only_where_it_must() -> None:
    dev, prod = _stack_file("dev"), _stack_file("prod")
    assert set(dev) == set(prod)
    assert prod["promoteFrom"] == DEV and dev["promoteFrom"] == "" and prod["release"] == ""
    unique = ("storageAccountName", "registryName", "dnsLabel", "resourceGroupName", "clusterName")
    assert all(dev[k] != prod[k] for k in unique)
    assert dataclasses.fields(Settings)  # every key above is a Settings field (from_mapping checks)


def _release(n: int) -> dict:
    digest = "sha256:" + str(n) * 64
    return Release(f"modelshipdevacr01.azurecr.io/modelship/digits:r{n}@{digest}", digest, "digits",
                   f"{n}.0.0", 1000).to_output()


A, B, C = _release(6), _release(7), _release(8)


@pytest.mark.parametrize(("dev_release", "own", "release", "kind", "previous"), [
    (A, {}, A, PROMOTION, None),                                        # the first promotion
    (B, {"release": A}, B, PROMOTION, A),                               # remembers what it replaces
    (B, {"release": B, "previousRelease": A}, B, PROMOTION, A),         # a re-run keeps it
    (B, {"release": B, "previousRelease": A}, A, ROLLBACK, None),       # back to A, nothing further
    (B, {"release": A}, A, RERUN, None),                                # a retried rollback run
    (B, {"release": A, "previousRelease": None}, C, None, None),        # neither dev's nor prod's
    (B, {"release": B, "previousRelease": A}, C, None, None),
])
def test_prod_deploys_dev_release_or_rolls_back_to_its_own_previous(
        dev_release: dict, own: dict, release: dict, kind: str | None, previous: dict | None,
        tmp_path: Path) -> None:
    """Under mocks, the whole prod program: the StackReferences to dev and to prod itself decide."""
    (tmp_path / "app").mkdir()
    outputs = {DEV: {"release": dev_release}, PROD: own}
    if kind is None:
        with pytest.raises(Exception, match=f"verified and runs {dev_release['digest']}"):
            run_stack(_prod_settings(release), project_root=tmp_path, stack_outputs=outputs, stack="prod")
        return
    run = run_stack(_prod_settings(release), project_root=tmp_path, stack_outputs=outputs, stack="prod")
    assert _image(run).endswith("@" + release["digest"])
    assert run.outputs["release"] == release
    assert run.outputs.get("previousRelease") == previous
    assert release_kind(DEV, dev_release, own.get("release"), own.get("previousRelease"),
                        Release.from_mapping(release)) == kind


def test_a_rollback_needs_the_release_prod_ran_before() -> None:
    """Without a previous release (first promotion, or right after a rollback) there is nothing to
    roll back to: dev's other digest is refused."""
    with pytest.raises(ValueError, match="verified and runs"):
        release_kind(DEV, B, A, None, Release.from_mapping(C))
    assert previous_release(ROLLBACK, B, A, Release.from_mapping(A)) is None
