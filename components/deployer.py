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
from enum import StrEnum
from pathlib import Path

from components.choices import allowed
from components.roles import PrincipalType


class DeployerPrincipalType(StrEnum):
    """What the identity running ``pulumi up`` is, for the role assignments the stack gives it.

    ``auto`` detects it at deploy time (:func:`resolve_principal_type`): ``ServicePrincipal`` when
    the azure-native provider signs in as one (``ARM_CLIENT_ID``, ``ARM_USE_MSI``), else the kind of
    the ``az login`` account. ARM refuses an assignment whose type does not match the principal.
    """

    AUTO = "auto"
    USER = PrincipalType.USER.value
    SERVICE_PRINCIPAL = PrincipalType.SERVICE_PRINCIPAL.value


_AZ_USER_TYPES = {"user": PrincipalType.USER, "serviceprincipal": PrincipalType.SERVICE_PRINCIPAL}


class PrincipalTypeError(ValueError):
    """The deploying identity's kind could not be found out; the message names the key to set."""


def _az_profile_kind(environ: Mapping[str, str]) -> PrincipalType | None:
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


def resolve_principal_type(configured: DeployerPrincipalType | str,
                           environ: Mapping[str, str] | None = None) -> PrincipalType:
    """``User`` or ``ServicePrincipal`` for the identity running the program.

    ``configured`` is the ``deployerPrincipalType`` value (``auto``, ``User``, ``ServicePrincipal``).
    """
    try:
        wanted = DeployerPrincipalType(configured)
    except ValueError:
        raise PrincipalTypeError(f"config key 'deployerPrincipalType': value {configured!r} is not allowed; "
                                 f"allowed: {allowed(DeployerPrincipalType)}") from None
    if wanted is not DeployerPrincipalType.AUTO:
        return PrincipalType(wanted.value)
    env = os.environ if environ is None else environ
    if env.get("ARM_CLIENT_ID") or env.get("ARM_USE_MSI", "").lower() == "true":
        return PrincipalType.SERVICE_PRINCIPAL
    kind = _az_profile_kind(env)
    if kind is None:
        raise PrincipalTypeError(
            "config key 'deployerPrincipalType' is 'auto' but the deploying identity could not be found "
            "out (no ARM_CLIENT_ID/ARM_USE_MSI and no signed-in `az login` account); run `az login`, or "
            "set it: `pulumi config set deployerPrincipalType User` (a person) or `ServicePrincipal` "
            "(a pipeline, service principal or managed identity)"
        )
    return kind
