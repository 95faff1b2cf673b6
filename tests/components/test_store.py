"""ModelStore: its Args' rules, and the outputs wired to the storage account it creates."""

from __future__ import annotations

import pulumi
import pytest

from components.roles import PrincipalType
from components.store import ModelStore, ModelStoreArgs, StorageSku
from components.testing import RecordingMocks, one


@pytest.mark.parametrize(("overrides", "message"), [
    ({"retention_days": 0, "deployer_principal_type": "User"}, "retention_days must be 1-365"),
    ({"retention_days": 366, "deployer_principal_type": "User"}, "retention_days must be 1-365"),
    # pulumi-azure-native would send principalType User, which ARM refuses for a pipeline identity.
    ({}, "deployer_principal_type must be one of User, ServicePrincipal, Group when grant_read_to_deployer"),
    ({"sku": "Premium_LRS", "deployer_principal_type": "User"},
     "sku must be one of Standard_LRS, Standard_ZRS"),
])
def test_args_refuse(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelStoreArgs(**{"resource_group_name": "rg", "account_name": "name01", "location": "l",
                          **overrides})  # type: ignore[arg-type]


def test_choices_given_as_strings_become_enums() -> None:
    args = ModelStoreArgs("rg", "name01", "l", sku="Standard_ZRS", deployer_principal_type="ServicePrincipal")
    assert args.sku is StorageSku.STANDARD_ZRS
    assert args.deployer_principal_type is PrincipalType.SERVICE_PRINCIPAL


def test_no_deployer_type_needed_without_the_read_grant() -> None:
    assert ModelStoreArgs("rg", "name01", "l", grant_read_to_deployer=False).deployer_principal_type is None


@pulumi.runtime.test
def test_outputs_are_the_accounts_and_the_containers(mocks: RecordingMocks) -> pulumi.Output:
    # (The blob endpoint is made up by the mocks from the account name: nothing to learn from it.)
    store = ModelStore("store", ModelStoreArgs(resource_group_name="rg", account_name="modelsdev01",
                                               location="westeurope", container_name="models",
                                               deployer_principal_type="ServicePrincipal"))

    def check(values: list) -> None:
        name, container, _ = values
        account = one(mocks.resources, "azure-native:storage:StorageAccount")
        blob_container = one(mocks.resources, "azure-native:storage:BlobContainer")
        assert account.inputs["accountName"] == "modelsdev01"
        assert name == account.outputs["name"]
        assert container == blob_container.outputs["name"] == "models"

    return pulumi.Output.all(store.account_name, store.container_name, store.container.id).apply(check)
