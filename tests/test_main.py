"""``__main__.py`` as Pulumi runs it: config in, stack out; bad config stops before any resource."""

from __future__ import annotations

import runpy
from collections.abc import Iterator
from pathlib import Path

import pulumi
import pytest
from pulumi.runtime.config import set_all_config

from components.testing import RecordingMocks, install_mocks, one
from settings import SettingsError

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {"modelship:storageAccountName": "modelshipdev01", "modelship:registryName": "modelshipacr01",
          "modelship:dnsLabel": "modelship-dev", "modelship:revision": "abc123"}


@pytest.fixture(autouse=True)
def clean_config():
    yield
    set_all_config({})


@pytest.fixture
def mocks() -> Iterator[RecordingMocks]:
    """Fresh recording mocks; a registration they rejected fails the test."""
    installed = install_mocks()
    yield installed
    assert not installed.rejections, f"the mocks rejected: {installed.rejections}"


@pulumi.runtime.test
def test_main_builds_the_stack_from_config(mocks: RecordingMocks, monkeypatch) -> pulumi.Output:
    # deployerPrincipalType is auto: the pipeline's ARM_CLIENT_ID says a service principal runs it.
    monkeypatch.setenv("ARM_CLIENT_ID", "pipeline-client-id")
    set_all_config(CONFIG)
    program = runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
    assert program["settings"].storage_account_name == "modelshipdev01"

    def check(values: list) -> None:
        endpoint, _cluster_name = values
        # The stack output is the store account's endpoint (the mocks make its value up).
        assert endpoint == one(mocks.resources, "azure-native:storage:StorageAccount").outputs[
            "primaryEndpoints"]["blob"]
        assert {r.type for r in mocks.resources} >= {"modelship:stack:Modelship",
                                                     "azure-native:containerservice:ManagedCluster"}

    # Waiting on the cluster's output too: the check reads what the mocks recorded for it.
    outputs = program["stack"].outputs
    return pulumi.Output.all(outputs["blobEndpoint"], outputs["clusterName"]).apply(check)


def test_bad_config_fails_before_any_resource(mocks: RecordingMocks) -> None:
    set_all_config({**CONFIG, "modelship:registryName": "my-registry"})

    expected = "config key 'registryName': value 'my-registry' is not allowed"

    def program() -> None:
        with pytest.raises(SettingsError, match=expected):
            runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

    # runtime.test waits for every registration the program started, so a resource declared
    # before the settings are validated would show up here.
    pulumi.runtime.test(program)()
    assert mocks.resources == [] and mocks.invokes == []
