"""Turn the AKS user kubeconfig into one that works without a human at the keyboard.

``listManagedClusterUserCredentials`` with ``format=exec`` returns a kubeconfig whose user runs
``kubelogin get-token --login devicecode ...``, which waits for someone to type a code in a
browser. This module does what ``kubelogin convert-kubeconfig -l <mode>`` does, in memory, so the
Kubernetes provider and CI can use the pipeline's own sign-in (``az login`` via OIDC, a workload
identity token file, ...). Pure function; no credentials are read or written here.
"""

from __future__ import annotations

import base64
from enum import StrEnum
from typing import Any

import yaml


class KubeloginMode(StrEnum):
    """How the kubeconfig's ``kubelogin get-token`` signs in; every one is non-interactive.

    ``azurecli`` reuses ``az login`` (the pipeline's OIDC login); ``workloadidentity`` reads the
    federated token from ``AZURE_FEDERATED_TOKEN_FILE``; ``spn`` reads a client secret from
    ``AAD_SERVICE_PRINCIPAL_CLIENT_SECRET``; ``msi`` uses the VM's managed identity. (``devicecode``
    and ``interactive`` wait for someone at a browser, so they are not members.)
    """

    AZURECLI = "azurecli"
    WORKLOADIDENTITY = "workloadidentity"
    SPN = "spn"
    MSI = "msi"


_FLAGS_WITH_VALUE = {"--login", "-l", "--server-id", "--client-id", "--tenant-id", "--environment"}
_KEEP_CLIENT_ID = {KubeloginMode.SPN}


class KubeconfigError(ValueError):
    """The kubeconfig returned by AKS is not in the expected exec format."""


def _parse_args(args: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    i = 1  # args[0] is the "get-token" subcommand
    while i < len(args):
        flag = args[i]
        if flag in _FLAGS_WITH_VALUE and i + 1 < len(args):
            values["--login" if flag == "-l" else flag] = args[i + 1]
            i += 2
        else:
            i += 1
    return values


def convert_kubeconfig(kubeconfig: str, login_mode: KubeloginMode | str) -> str:
    """Rewrite every kubelogin exec user of ``kubeconfig`` (YAML text) to ``--login login_mode``."""
    mode = KubeloginMode(login_mode).value  # a plain str: safe_dump refuses enum members
    try:
        doc: Any = yaml.safe_load(kubeconfig)
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"kubeconfig is not YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("users"), list):
        raise KubeconfigError("kubeconfig has no users list")
    for entry in doc["users"]:
        exec_ = (entry.get("user") or {}).get("exec")
        if not exec_ or exec_.get("command") != "kubelogin":
            continue
        old = _parse_args(list(exec_.get("args") or []))
        if "--server-id" not in old:
            raise KubeconfigError(f"kubelogin user {entry.get('name')!r} has no --server-id")
        args = ["get-token", "--login", mode, "--server-id", old["--server-id"]]
        if mode in _KEEP_CLIENT_ID and "--client-id" in old:
            args += ["--client-id", old["--client-id"]]
        if "--tenant-id" in old and mode != KubeloginMode.AZURECLI:
            args += ["--tenant-id", old["--tenant-id"]]
        if "--environment" in old:
            args += ["--environment", old["--environment"]]
        exec_["args"] = args
        exec_["interactiveMode"] = "Never"
        exec_.pop("installHint", None)
    return yaml.safe_dump(doc, sort_keys=False)


def decode_kubeconfig(value: str, login_mode: KubeloginMode | str) -> str:
    """Decode the base64 ``value`` of a credential result and convert it."""
    try:
        text = base64.b64decode(value, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise KubeconfigError(f"kubeconfig value is not base64 UTF-8: {exc}") from None
    return convert_kubeconfig(text, login_mode)
