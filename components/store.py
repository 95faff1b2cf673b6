"""ModelStore: the storage account and private container the models live in.

Locked down for identity-only access: HTTPS only, TLS 1.2 minimum, no public blob access and shared
keys disabled, so every reader and writer authenticates with Entra ID (the pipeline's identity, a
workload identity) and no account key or SAS exists to leak. Versioning and soft delete keep an
overwritten or deleted model recoverable.

The identity running ``pulumi up`` gets *Storage Blob Data Reader* on the model container, so the
same pipeline identity can ``modelship-models fetch`` the model before every preview and up. It also
gets *Storage Blob Data Contributor* there under a role-assignment condition (Azure ABAC) that allows
writing only the release records: the alias records (``N/_aliases/A.json``: ``promote``, and the
move back after an aborted canary, ``modelship-models rollback``) and the evaluation reports
(``N/V/evaluations/*.json``). It cannot write or replace a model, a manifest or the latest pointer,
nor delete any blob.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pulumi
from pulumi_azure_native import storage

from components.choices import choice
from components.roles import BuiltinRole, PrincipalType, assign_role, client_config
from modelship_contract.manifest import ALIAS_DIR, EVALUATIONS_DIR

_BLOBS = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"
RELEASE_RECORD_PATHS = (f"*/{ALIAS_DIR}/*.json", f"*/*/{EVALUATIONS_DIR}/*.json")
"""Blob paths (``StringLike``) the deploying identity may write: the release records, nothing else."""


def release_records_condition(container: str) -> str:
    """The ABAC condition of the deployer's write access: blob writes and creations (``write``,
    ``add/action``) only on :data:`RELEASE_RECORD_PATHS`; deletions never (the scope is this container,
    so "a container with another name" is always false). Syntax and actions:
    https://learn.microsoft.com/azure/storage/blobs/storage-auth-abac-examples ("Write blobs in named
    containers with a path"), https://learn.microsoft.com/azure/role-based-access-control/conditions-format.
    """
    writes = " AND ".join(f"!(ActionMatches{{'{_BLOBS}/{action}'}})" for action in ("write", "add/action"))
    paths = " OR ".join(f"@Resource[{_BLOBS}:path] StringLike '{path}'" for path in RELEASE_RECORD_PATHS)
    never = (f"@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] "
             f"StringNotEquals '{container}'")
    return (f"(({writes}) OR ({paths})) AND "
            f"((!(ActionMatches{{'{_BLOBS}/delete'}})) OR ({never}))")


class StorageSku(StrEnum):
    """Redundancy of the model store account (Standard general-purpose v2 SKUs)."""

    STANDARD_LRS = "Standard_LRS"
    STANDARD_ZRS = "Standard_ZRS"
    STANDARD_GRS = "Standard_GRS"
    STANDARD_RAGRS = "Standard_RAGRS"
    STANDARD_GZRS = "Standard_GZRS"
    STANDARD_RAGZRS = "Standard_RAGZRS"


@dataclass
class ModelStoreArgs:
    resource_group_name: pulumi.Input[str]
    """Resource group of the account."""
    account_name: str
    """Globally unique storage account name (3-24 lowercase letters and digits)."""
    location: pulumi.Input[str]
    """Azure region."""
    container_name: str = "models"
    """Private container the model store CLI writes ``NAME/VERSION/`` prefixes into."""
    sku: StorageSku = StorageSku.STANDARD_LRS
    """Redundancy SKU."""
    retention_days: int = 7
    """Soft-delete retention for blobs and containers."""
    grant_read_to_deployer: bool = True
    """Assign Storage Blob Data Reader on the container to the identity running ``pulumi up``, and
    Storage Blob Data Contributor limited to the release records (:func:`release_records_condition`):
    the pipeline evaluates, promotes and moves an alias back after an aborted canary."""
    deployer_principal_type: PrincipalType | None = None
    """``User`` or ``ServicePrincipal`` (required with ``grant_read_to_deployer``)."""

    def __post_init__(self) -> None:
        if not 1 <= self.retention_days <= 365:
            raise ValueError(f"retention_days must be 1-365, got {self.retention_days}")
        self.sku = choice(StorageSku, self.sku, "sku")
        if self.grant_read_to_deployer:
            self.deployer_principal_type = choice(
                PrincipalType, self.deployer_principal_type, "deployer_principal_type",
                "when grant_read_to_deployer is set")


class ModelStore(pulumi.ComponentResource):
    """Storage account + blob service policy + private container for model files."""

    account_name: pulumi.Output[str]
    """Name of the storage account."""
    blob_endpoint: pulumi.Output[str]
    """Primary blob endpoint, ``https://<account>.blob.core.windows.net/``."""
    container_name: pulumi.Output[str]
    """Name of the private model container."""

    def __init__(self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelship:store:ModelStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.account = storage.StorageAccount(
            f"{name}-account",
            account_name=args.account_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            kind=storage.Kind.STORAGE_V2,
            sku=storage.SkuArgs(name=args.sku),
            enable_https_traffic_only=True,
            minimum_tls_version=storage.MinimumTlsVersion.TLS1_2,
            allow_blob_public_access=False,
            # Identity only: no account keys, hence no SAS signed with them either.
            allow_shared_key_access=False,
            default_to_o_auth_authentication=True,
            allow_cross_tenant_replication=False,
            opts=child,
        )
        retention = storage.DeleteRetentionPolicyArgs(enabled=True, days=args.retention_days)
        self.blob_service = storage.BlobServiceProperties(
            f"{name}-blobs",
            account_name=self.account.name,
            resource_group_name=args.resource_group_name,
            blob_services_name="default",
            is_versioning_enabled=True,
            delete_retention_policy=retention,
            container_delete_retention_policy=retention,
            opts=child,
        )
        self.container = storage.BlobContainer(
            f"{name}-container",
            account_name=self.account.name,
            resource_group_name=args.resource_group_name,
            container_name=args.container_name,
            public_access=storage.PublicAccess.NONE,
            opts=child,
        )
        self.read_assignment: pulumi.Resource | None = None
        self.records_assignment: pulumi.Resource | None = None
        if args.grant_read_to_deployer:
            config = client_config(self)
            self.read_assignment = assign_role(
                f"{name}-read", parent=self, config=config, role=BuiltinRole.STORAGE_BLOB_DATA_READER,
                principal_id=config.object_id, principal_type=args.deployer_principal_type,
                scope=self.container.id,
            )
            self.records_assignment = assign_role(
                f"{name}-release-records", parent=self, config=config,
                role=BuiltinRole.STORAGE_BLOB_DATA_CONTRIBUTOR, principal_id=config.object_id,
                principal_type=args.deployer_principal_type, scope=self.container.id,
                condition=release_records_condition(args.container_name),
            )

        self.account_name = self.account.name
        self.blob_endpoint = self.account.primary_endpoints.apply(lambda e: e.blob)
        self.container_name = self.container.name
        self.register_outputs({
            "accountName": self.account_name,
            "blobEndpoint": self.blob_endpoint,
            "containerName": self.container_name,
        })
