"""The AKS user kubeconfig rewritten for a non-interactive kubelogin mode."""

from __future__ import annotations

import pytest
import yaml

from components.kubeconfig import KubeconfigError, convert_kubeconfig
from components.testing import exec_kubeconfig


@pytest.mark.parametrize(("mode", "expected"), [
    ("azurecli", ["get-token", "--login", "azurecli", "--server-id", "6dae42f8-4368-4678-94ff-3960e28e3630",
                  "--environment", "AzurePublicCloud"]),
    ("workloadidentity", ["get-token", "--login", "workloadidentity", "--server-id",
                          "6dae42f8-4368-4678-94ff-3960e28e3630", "--tenant-id",
                          "11111111-2222-3333-4444-555555555555", "--environment", "AzurePublicCloud"]),
])
def test_kubeconfig_conversion_drops_device_code(mode: str, expected: list[str]) -> None:
    converted = yaml.safe_load(convert_kubeconfig(exec_kubeconfig(), mode))
    exec_ = converted["users"][0]["user"]["exec"]
    assert exec_["args"] == expected
    assert exec_["interactiveMode"] == "Never"
    assert converted["clusters"] == yaml.safe_load(exec_kubeconfig())["clusters"]


def test_kubeconfig_conversion_rejects_garbage() -> None:
    with pytest.raises(KubeconfigError, match="no users list"):
        convert_kubeconfig("apiVersion: v1\n", "azurecli")
    broken = exec_kubeconfig().replace("--server-id, ", "")
    with pytest.raises(KubeconfigError, match="has no --server-id"):
        convert_kubeconfig(broken, "azurecli")
