"""ContainerRegistry: the private ACR the model images are pushed to and AKS pulls from.

The admin user and anonymous pull are off: AKS pulls with its kubelet identity (AcrPull, assigned by
KubernetesCluster) and the pipeline pushes with its own Entra ID identity (AcrPush, assigned here to
the deploying principal), so no registry password exists anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pulumi
from pulumi_azure_native import containerregistry

from components.choices import choice
from components.roles import BuiltinRole, PrincipalType, assign_role, client_config


class RegistrySku(StrEnum):
    """Azure Container Registry tiers."""

    BASIC = "Basic"
    STANDARD = "Standard"
    PREMIUM = "Premium"


@dataclass
class ContainerRegistryArgs:
    resource_group_name: pulumi.Input[str]
    """Resource group of the registry."""
    registry_name: str
    """Globally unique registry name (5-50 letters and digits)."""
    location: pulumi.Input[str]
    """Azure region."""
    sku: RegistrySku = RegistrySku.BASIC
    """Registry tier."""
    grant_push_to_deployer: bool = True
    """Assign AcrPush to the identity running ``pulumi up`` so it can push the model image."""
    deployer_principal_type: PrincipalType | None = None
    """``User`` or ``ServicePrincipal``: what the identity running ``pulumi up`` is (required with
    ``grant_push_to_deployer``; ARM refuses a mismatch). See :mod:`components.deployer`."""

    def __post_init__(self) -> None:
        self.sku = choice(RegistrySku, self.sku, "sku")
        if self.grant_push_to_deployer:
            self.deployer_principal_type = choice(
                PrincipalType, self.deployer_principal_type, "deployer_principal_type",
                "when grant_push_to_deployer is set")


class ContainerRegistry(pulumi.ComponentResource):
    """Azure Container Registry without admin user or anonymous pull."""

    login_server: pulumi.Output[str]
    """Registry host, ``<name>.azurecr.io``."""
    registry_id: pulumi.Output[str]
    """ARM id of the registry (scope for role assignments)."""

    def __init__(self, name: str, args: ContainerRegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("modelship:registry:ContainerRegistry", name, None, opts)
        self.registry = containerregistry.Registry(
            f"{name}-acr",
            registry_name=args.registry_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            sku=containerregistry.SkuArgs(name=args.sku),
            admin_user_enabled=False,
            anonymous_pull_enabled=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.push_assignment: pulumi.Resource | None = None
        if args.grant_push_to_deployer:
            config = client_config(self)
            self.push_assignment = assign_role(
                f"{name}-push", parent=self, config=config, role=BuiltinRole.ACR_PUSH,
                principal_id=config.object_id, principal_type=args.deployer_principal_type,
                scope=self.registry.id,
            )
        self.login_server = self.registry.login_server
        self.registry_id = self.registry.id
        self.register_outputs({"loginServer": self.login_server, "registryId": self.registry_id})
