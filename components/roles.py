"""Built-in Azure role definitions used by the stack, resolved in the deploying subscription.

The GUIDs are Azure's fixed built-in role ids (the same in every tenant); the subscription part of
the role definition id always comes from ``getClientConfig`` at deploy time, never from the code.
"""

from __future__ import annotations

from enum import StrEnum

import pulumi
from pulumi_azure_native import authorization

from components.choices import choice


class BuiltinRole(StrEnum):
    """Built-in roles and their fixed ids."""

    ACR_PULL = "7f951dca-d4ca-4dab-b8c3-cc6d4bdbe6a4"
    ACR_PUSH = "8311e382-0749-4cb8-b61a-304f252e45ec"
    AKS_RBAC_CLUSTER_ADMIN = "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b"
    MONITORING_DATA_READER = "b0d8363b-8ddd-447d-831f-62ca05bff136"
    STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
    STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"


class PrincipalType(StrEnum):
    """Principal types the stack assigns roles to. Always sent: pulumi-azure-native fills in ``User``
    when none is given, and ARM refuses that for a service principal (UnmatchedPrincipalType)."""

    USER = "User"
    SERVICE_PRINCIPAL = "ServicePrincipal"
    GROUP = "Group"


def role_definition_id(subscription_id: str, role: BuiltinRole) -> str:
    """``/subscriptions/<sub>/providers/Microsoft.Authorization/roleDefinitions/<guid>``."""
    return f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role.value}"


def client_config(parent: pulumi.Resource) -> pulumi.Output[authorization.GetClientConfigResult]:
    """The deploying identity (tenant, subscription, object id), asked once per component."""
    return authorization.get_client_config_output(opts=pulumi.InvokeOutputOptions(parent=parent))


def assign_role(
    name: str,
    *,
    parent: pulumi.Resource,
    config: pulumi.Output[authorization.GetClientConfigResult],
    role: BuiltinRole,
    principal_id: pulumi.Input[str],
    scope: pulumi.Input[str],
    principal_type: PrincipalType | str | None,
    condition: str | None = None,
    opts: pulumi.ResourceOptions | None = None,
) -> authorization.RoleAssignment:
    """Grant ``role`` to ``principal_id`` (a ``principal_type``) on ``scope``, limited by an Azure ABAC
    ``condition`` when one is given (condition syntax version 2.0)."""
    return authorization.RoleAssignment(
        name,
        principal_id=principal_id,
        principal_type=choice(PrincipalType, principal_type, "principal_type"),
        role_definition_id=config.subscription_id.apply(lambda sub: role_definition_id(sub, role)),
        scope=scope,
        **({"condition": condition, "condition_version": "2.0"} if condition else {}),
        opts=pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=parent), opts),
    )
