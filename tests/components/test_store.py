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


@pulumi.runtime.test
def test_the_deployer_may_write_the_release_records_and_nothing_else(mocks: RecordingMocks) -> pulumi.Output:
    """The pipeline identity moves aliases (promote, and back after an aborted canary) and stores
    evaluation reports: Storage Blob Data Contributor on the container, under a condition that names
    exactly those blob paths and allows no deletion."""
    import fnmatch

    from components.roles import BuiltinRole
    from components.store import RELEASE_RECORD_PATHS
    from modelstore.aliases import alias_blob_name
    from modelstore.reports import REPORT_DIR

    store = ModelStore("store", ModelStoreArgs(resource_group_name="rg", account_name="modelsdev01",
                                               location="westeurope", container_name="models",
                                               deployer_principal_type="ServicePrincipal"))

    def check(values: list) -> None:
        container_id = values[0]
        contributor = BuiltinRole.STORAGE_BLOB_DATA_CONTRIBUTOR.value
        [records] = [r for r in mocks.resources if r.type == "azure-native:authorization:RoleAssignment"
                     and r.inputs["roleDefinitionId"].endswith(contributor)]
        assert records.inputs["scope"] == container_id and records.inputs["conditionVersion"] == "2.0"
        condition = records.inputs["condition"]
        for path in RELEASE_RECORD_PATHS:
            assert f"StringLike '{path}'" in condition
        assert "blobs/delete'})) OR (@Resource[Microsoft.Storage/storageAccounts/blobServices/" \
               "containers:name] StringNotEquals 'models')" in condition

        # The patterns (StringLike: '*' is any run of characters) match what the store writes, only that.
        def writable(blob: str) -> bool:
            return any(fnmatch.fnmatchcase(blob, p) for p in RELEASE_RECORD_PATHS)

        assert writable(alias_blob_name("digits", "production"))
        assert writable(f"digits/1.2.0/{REPORT_DIR}/20261206T050000Z-0123456789abcdef.json")
        for other in ("digits/1.2.0/model.onnx", "digits/1.2.0/manifest.json", "digits/latest.json",
                      "_datasets/digits-golden/1/rows.json"):
            assert not writable(other), other

    return pulumi.Output.all(store.container.id, store.records_assignment.id).apply(check)
