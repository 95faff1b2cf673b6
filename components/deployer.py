"""Who runs ``pulumi up``: the principal type ARM expects on role assignments to that identity.

ARM refuses a role assignment whose ``principalType`` does not match the directory object
(``UnmatchedPrincipalType``), and pulumi-azure-native sends ``User`` when none is given. A person
runs the program after ``az login``; a pipeline runs it as a service principal (an app
registration, a managed identity or a workload identity federation all are service principals).

:func:`resolve_principal_type` answers from, in order: the ``deployerPrincipalType`` config key
when it is not ``auto``; the azure-native provider's own settings (``ARM_CLIENT_ID`` or
``ARM_USE_MSI``: it signs in as a service principal); else the Azure CLI's signed-in account
(``user.type`` of the default subscription in ``$AZURE_CONFIG_DIR/azureProfile.json``, the file
``az login`` writes). Nothing found is an error naming the key to set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

USER = "User"
SERVICE_PRINCIPAL = "ServicePrincipal"
_AZ_USER_TYPES = {"user": USER, "serviceprincipal": SERVICE_PRINCIPAL}


class PrincipalTypeError(ValueError):
    """The deploying identity's kind could not be found out; the message names the key to set."""


def _az_profile_kind(environ: Mapping[str, str]) -> str | None:
    home = Path(environ.get("HOME", "~")).expanduser()
    config_dir = Path(environ.get("AZURE_CONFIG_DIR") or home / ".azure")
    try:
        # az writes this file with a UTF-8 byte order mark.
        profile = json.loads((config_dir / "azureProfile.json").read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    for sub in profile.get("subscriptions") or []:
        if isinstance(sub, dict) and sub.get("isDefault"):
            kind = str((sub.get("user") or {}).get("type", "")).lower()
            return _AZ_USER_TYPES.get(kind)
    return None


def resolve_principal_type(configured: str, environ: Mapping[str, str] | None = None) -> str:
    """``User`` or ``ServicePrincipal`` for the identity running the program.

    ``configured`` is the ``deployerPrincipalType`` value (``auto``, ``User``, ``ServicePrincipal``).
    """
    if configured in (USER, SERVICE_PRINCIPAL):
        return configured
    if configured != "auto":
        raise PrincipalTypeError(f"config key 'deployerPrincipalType': value {configured!r} is not allowed; "
                                 f"allowed: auto, {USER}, {SERVICE_PRINCIPAL}")
    env = os.environ if environ is None else environ
    if env.get("ARM_CLIENT_ID") or env.get("ARM_USE_MSI", "").lower() == "true":
        return SERVICE_PRINCIPAL
    kind = _az_profile_kind(env)
    if kind is None:
        raise PrincipalTypeError(
            "config key 'deployerPrincipalType' is 'auto' but the deploying identity could not be found "
            "out (no ARM_CLIENT_ID/ARM_USE_MSI and no signed-in `az login` account); run `az login`, or "
            "set it: `pulumi config set deployerPrincipalType User` (a person) or `ServicePrincipal` "
            "(a pipeline, service principal or managed identity)"
        )
    return kind
