"""KubernetesCluster's Args: pool bounds, the choices it takes typed, non-interactive sign-in only."""

from __future__ import annotations

import pytest

from components.cluster import KubernetesClusterArgs, NetworkPolicy
from components.kubeconfig import KubeloginMode


def cluster_args(**overrides: object) -> KubernetesClusterArgs:
    values: dict = {"resource_group_name": "rg", "cluster_name": "c", "location": "l",
                    "deployer_principal_type": "User"}
    return KubernetesClusterArgs(**{**values, **overrides})


@pytest.mark.parametrize(("overrides", "message"), [
    ({"min_count": 4, "max_count": 2}, "min_count <= max_count"),
    ({"min_count": 0}, "min_count <= max_count"),
    ({"max_count": 101}, "min_count <= max_count"),
    ({"network_policy": "cillium"}, "network_policy must be one of cilium, azure, calico, got 'cillium'"),
    ({"deployer_principal_type": None},
     "deployer_principal_type must be one of User, ServicePrincipal, Group when grant_admin_to_deployer"),
])
def test_args_refuse(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cluster_args(**overrides)


@pytest.mark.parametrize("mode", ["devicecode", "interactive"])
def test_interactive_sign_in_is_refused(mode: str) -> None:
    # devicecode and interactive wait for someone at a browser: CI would hang.
    expected = rf"kubelogin_mode '{mode}' is not allowed; use a non-interactive mode: azurecli, "
    with pytest.raises(ValueError, match=expected + "workloadidentity, spn, msi"):
        cluster_args(kubelogin_mode=mode)


def test_choices_given_as_strings_become_enums() -> None:
    args = cluster_args(network_policy="azure", kubelogin_mode="msi")
    assert args.network_policy is NetworkPolicy.AZURE and args.kubelogin_mode is KubeloginMode.MSI
