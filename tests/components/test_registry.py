"""ContainerRegistry: its Args' rules, and the push grant only when asked for."""

from __future__ import annotations

import pulumi
import pytest

from components.registry import ContainerRegistry, ContainerRegistryArgs, RegistrySku
from components.testing import RecordingMocks


@pytest.mark.parametrize(("overrides", "message"), [
    ({}, "deployer_principal_type must be one of User, ServicePrincipal, Group when grant_push_to_deployer"),
    ({"sku": "Gold", "deployer_principal_type": "User"},
     "sku must be one of Basic, Standard, Premium, got 'Gold'"),
])
def test_args_refuse(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ContainerRegistryArgs(**{"resource_group_name": "rg", "registry_name": "name01", "location": "l",
                                 **overrides})  # type: ignore[arg-type]


def test_sku_given_as_a_string_becomes_the_enum() -> None:
    assert ContainerRegistryArgs("rg", "name01", "l", sku="Premium",
                                 grant_push_to_deployer=False).sku is RegistrySku.PREMIUM


@pulumi.runtime.test
def test_without_push_grant_makes_no_role_assignment(mocks: RecordingMocks) -> pulumi.Output:
    registry = ContainerRegistry("reg", ContainerRegistryArgs(
        resource_group_name="rg", registry_name="modelshipacr01", location="westeurope",
        grant_push_to_deployer=False))

    assert registry.push_assignment is None

    def check(_: str) -> None:
        assert not [r for r in mocks.resources if r.type == "azure-native:authorization:RoleAssignment"]
        assert not mocks.invokes

    # Waiting on the registry's output: the check reads what the mocks recorded by then.
    return registry.login_server.apply(check)
