"""Preflight checks that ask Azure: who is signed in, their roles, the global names, the model."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from components.deployer import DeployerPrincipalType
from preflight.checks import ADMIN_ROLES, WRITE_ROLES, Context, Result, _json

_KINDS = {"user": "User", "serviceprincipal": "ServicePrincipal"}


def check_identity(ctx: Context) -> list[Result]:
    account, problem = _json(ctx, ["az", "account", "show", "--output", "json"])
    if account is None:
        return [Result("signed in", "FAIL", f"no Azure sign-in ({problem})",
                       "az login  (CI: azure/login or AzureCLI@2 with workload identity federation)")]
    ctx.account = account
    user = account.get("user") or {}
    kind = _KINDS.get(str(user.get("type", "")).lower(), str(user.get("type")))
    results = [Result("signed in", "ok", f"{user.get('name')} ({kind}) in subscription {account.get('id')}")]
    wanted = ctx.settings.deployer_principal_type if ctx.settings else DeployerPrincipalType.AUTO
    if ctx.env.get("ARM_CLIENT_ID") and kind != "ServicePrincipal":
        results.append(Result("principal type", "FAIL", "ARM_CLIENT_ID is set (Pulumi signs in as a "
                              f"service principal) but az is signed in as a {kind}",
                              "unset ARM_CLIENT_ID, or az login --service-principal as that identity"))
    elif wanted is not DeployerPrincipalType.AUTO and wanted.value != kind:
        results.append(Result("principal type", "FAIL", f"deployerPrincipalType is {wanted.value} but the "
                              f"signed-in identity is a {kind}: ARM would refuse the role assignments "
                              "(UnmatchedPrincipalType)",
                              f"pulumi config set --stack {ctx.stack} deployerPrincipalType auto"))
    else:
        results.append(Result("principal type", "ok", f"role assignments will say principalType {kind}"))
    return results


def _object_id(ctx: Context) -> str | None:
    """The signed-in identity's object id, from the ``oid`` claim of its own ARM token: works for
    users and service principals alike, with no Microsoft Graph permission."""
    data, _ = _json(ctx, ["az", "account", "get-access-token", "--output", "json"])
    token = str((data or {}).get("accessToken", ""))
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    return claims.get("oid") if isinstance(claims, dict) else None


def check_roles(ctx: Context) -> list[Result]:
    if not ctx.account:
        return []
    scope = f"/subscriptions/{ctx.account.get('id')}"
    object_id = _object_id(ctx)
    if not object_id:
        return [Result("roles", "FAIL", "cannot read the signed-in identity's object id from its token",
                       "az account get-access-token must work: az login again")]
    # Filtered here rather than with --assignee, which makes az look the principal up in Graph.
    data, problem = _json(ctx, ["az", "role", "assignment", "list", "--scope", scope, "--include-inherited",
                                "--output", "json"])
    if data is None:
        return [Result("roles", "FAIL", f"cannot list role assignments: {problem}",
                       f"grant the identity Reader (at least) on {scope}, or sign in again: az login")]
    roles = {a.get("roleDefinitionName") for a in data if a.get("principalId") == object_id
             and (scope.startswith(str(a.get("scope", "")).rstrip("/")) or a.get("scope") == "/")}
    results = []
    for needed, what in ((WRITE_ROLES, "Contributor"),
                         (ADMIN_ROLES, "Role Based Access Control Administrator")):
        if roles & needed:
            results.append(Result("roles", "ok", f"{sorted(roles & needed)[0]} on {scope}"))
        else:
            results.append(Result("roles", "FAIL", f"{what} (or Owner) is missing on {scope}: the stack "
                                  "creates its resource group and role assignments",
                                  f"az role assignment create --assignee {object_id} --role '{what}' "
                                  f"--scope {scope}"))
    return results


def _own(ctx: Context, argv: list[str]) -> bool:
    rc, _, _ = ctx.run(argv)
    return rc == 0


def check_names(ctx: Context) -> list[Result]:
    if ctx.settings is None or not ctx.account:
        return []
    s = ctx.settings
    results = []
    for what, check, own, key in (
        ("storage account", ["az", "storage", "account", "check-name", "--name", s.storage_account_name,
                             "--output", "json"],
         ["az", "storage", "account", "show", "--name", s.storage_account_name, "--resource-group",
          s.resource_group_name, "--output", "none"], "storageAccountName"),
        ("registry", ["az", "acr", "check-name", "--name", s.registry_name, "--output", "json"],
         ["az", "acr", "show", "--name", s.registry_name, "--resource-group", s.resource_group_name,
          "--output", "none"], "registryName"),
    ):
        data, problem = _json(ctx, check)
        if data is None:
            results.append(Result(f"{what} name", "FAIL", f"cannot check {key}: {problem}",
                                  f"az login, then: {' '.join(check)}"))
        elif data.get("nameAvailable") or _own(ctx, own):
            results.append(Result(f"{what} name", "ok", f"{getattr(s, _field(key))} is free or this stack's"))
        else:
            results.append(Result(f"{what} name", "FAIL", f"{key} {getattr(s, _field(key))!r} is taken: "
                                  f"{data.get('message') or data.get('reason')}",
                                  f"pulumi config set --stack {ctx.stack} {key} <another unique name>"))
    url = (f"https://management.azure.com/subscriptions/{ctx.account.get('id')}/providers/Microsoft.Network/"
           f"locations/{s.location}/CheckDnsNameAvailability?domainNameLabel={s.dns_label}"
           "&api-version=2024-05-01")
    data, problem = _json(ctx, ["az", "rest", "--method", "get", "--url", url, "--output", "json"])
    if data is None:
        results.append(Result("DNS label", "FAIL", f"cannot check dnsLabel: {problem}",
                              f"az login, then: az rest --method get --url '{url}'"))
    elif data.get("available") or ctx.deployed:
        results.append(Result("DNS label", "ok", f"{s.dns_label}.{s.location}.cloudapp.azure.com"
                              + ("" if data.get("available") else " (in use: this stack's service)")))
    else:
        results.append(Result("DNS label", "FAIL", f"dnsLabel {s.dns_label!r} is taken in {s.location}",
                              f"pulumi config set --stack {ctx.stack} dnsLabel <another label>"))
    return results


def _field(key: str) -> str:
    return {"storageAccountName": "storage_account_name", "registryName": "registry_name"}[key]


def check_model(ctx: Context) -> list[Result]:
    """A model must be fetched when the stack already has a model store (it will deploy one)."""
    if ctx.settings is None:
        return []
    if ctx.settings.promote_from and ctx.settings.release is not None:
        # A promoting stack (prod) never builds: it deploys the release, nothing is fetched.
        release = ctx.settings.release
        return [Result("model", "ok", f"{release.model}@{release.model_version} {release.digest} "
                       f"from {ctx.settings.promote_from} (no fetch, no build)")]
    rc, out, _ = ctx.run(["pulumi", "stack", "output", "blobEndpoint", "--stack", ctx.stack])
    ctx.deployed = rc == 0 and bool(out.strip())
    manifest = ctx.root / ctx.settings.model_dir / "manifest.json"
    wanted = f"{ctx.settings.model_name}@{ctx.settings.model_version}"
    fetch = (f"modelship-models fetch {wanted} {ctx.settings.model_dir} --account-url "
             f"https://{ctx.settings.storage_account_name}.blob.core.windows.net --container "
             f"{ctx.settings.model_container}")
    if not manifest.is_file():
        if ctx.deployed:
            return [Result("model", "FAIL", f"no model in {ctx.settings.model_dir}: `pulumi up` would delete "
                           "the deployed image and service", fetch)]
        return [Result("model", "warn", "no model fetched: the first `pulumi up` creates the platform only",
                       "after it, publish a model and: " + fetch)]
    from components.stack import ModelMismatchError, choose_model

    try:
        choice = choose_model(ctx.settings, Path(ctx.root), "doctor")
    except (ModelMismatchError, ValueError) as exc:
        return [Result("model", "FAIL", str(exc), fetch)]
    manifest_obj = choice.spec.manifest if choice.spec else None
    return [Result("model", "ok", f"{manifest_obj.name}@{manifest_obj.version} in {ctx.settings.model_dir}"
                   if manifest_obj else "fetched")]
