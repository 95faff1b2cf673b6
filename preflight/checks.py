"""The preflight checks, one function per prerequisite of docs/azure.md's day-one list.

Each check takes a :class:`Context` and returns :class:`Result` rows. Tools are run through
``Context.run`` (bounded timeout, never a shell); a tool that is missing or does not answer is a
failed check naming it, never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from collections.abc import Callable, Mapping
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import yaml

from settings import Settings, SettingsError, stack_config

TIMEOUT = 60
"""Seconds any one tool call may take."""
CLOUD_SECRETS = ("azurekeyvault://", "awskms://", "gcpkms://", "hashivault://")
ADMIN_ROLES = {"Owner", "Role Based Access Control Administrator", "User Access Administrator"}
WRITE_ROLES = {"Owner", "Contributor"}


@dataclasses.dataclass(frozen=True)
class Result:
    check: str
    status: str
    """``ok``, ``warn`` or ``FAIL``."""
    message: str
    fix: str = ""


@dataclasses.dataclass
class Context:
    stack: str
    root: Path
    env: Mapping[str, str]
    run: Callable[[list[str]], tuple[int, str, str]]
    settings: Settings | None = None
    stack_file: dict[str, Any] = dataclasses.field(default_factory=dict)
    account: dict[str, Any] = dataclasses.field(default_factory=dict)
    deployed: bool = False
    action: str = "up"
    """``up`` or ``preview``: a preview builds no image, so needs no builder."""


def run_tool(env: Mapping[str, str]) -> Callable[[list[str]], tuple[int, str, str]]:
    """A runner for ``Context.run``: (exit code, stdout, stderr); 127 when the tool is missing."""

    def run(argv: list[str]) -> tuple[int, str, str]:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=dict(env))
        except FileNotFoundError:
            return 127, "", f"{argv[0]}: not found on PATH"
        except subprocess.TimeoutExpired:
            return 124, "", f"{' '.join(argv[:3])}: no answer within {TIMEOUT} s"
        return proc.returncode, proc.stdout, proc.stderr

    return run


def _json(ctx: Context, argv: list[str]) -> tuple[Any, str]:
    rc, out, err = ctx.run(argv)
    if rc != 0:
        return None, (err.strip().splitlines() or [f"exit {rc}"])[-1]
    try:
        return json.loads(out or "null"), ""
    except ValueError:
        return None, f"{' '.join(argv[:3])} printed no JSON"


def _version(text: str) -> tuple[int, ...]:
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(p) for p in match.groups()) if match else ()


# --- tools ----------------------------------------------------------------------------------------


def check_tools(ctx: Context) -> list[Result]:
    results = []
    sdk = installed_version("pulumi")
    rc, out, err = ctx.run(["pulumi", "version"])
    if rc != 0:
        results.append(Result("pulumi", "FAIL", err.strip() or "pulumi does not run",
                              f"curl -fsSL https://get.pulumi.com | sh -s -- --version {sdk}"))
    elif _version(out) < _version(sdk):
        results.append(Result("pulumi", "FAIL", f"pulumi CLI {out.strip()} is older than the SDK {sdk}",
                              f"curl -fsSL https://get.pulumi.com | sh -s -- --version {sdk}"))
    else:
        results.append(Result("pulumi", "ok", f"pulumi CLI {out.strip()} (SDK {sdk})"))
    data, problem = _json(ctx, ["az", "version", "--output", "json"])
    if data is None:
        results.append(Result("az", "FAIL", problem or "az does not run",
                              "install the Azure CLI: https://learn.microsoft.com/cli/azure/install-azure-cli"))
    else:
        results.append(Result("az", "ok", f"Azure CLI {data.get('azure-cli', '?')}"))
    rc, out, err = ctx.run(["kubelogin", "--version"])
    if rc != 0:
        results.append(Result("kubelogin", "FAIL", err.strip() or "kubelogin does not run (the stack's "
                              "kubeconfig signs in to AKS with it)", "az aks install-cli"))
    else:
        results.append(Result("kubelogin", "ok", " ".join(out.split())[:60]))
    rc, out, err = ctx.run(["docker", "buildx", "version"])
    if rc != 0:
        results.append(Result("docker buildx", "FAIL", err.strip() or "docker has no buildx plugin",
                              "install Docker with the buildx plugin (docker-buildx-plugin)"))
        return results
    results.append(Result("docker buildx", "ok", " ".join(out.split())[:60]))
    if ctx.action == "preview":
        return results
    builder = ctx.settings.image_builder if ctx.settings else "modelship"
    create = f"docker buildx create --name {builder} --driver docker-container --bootstrap"
    rc, out, _ = ctx.run(["docker", "buildx", "inspect", builder])
    driver = re.search(r"^Driver:\s*(\S+)", out, re.M)
    if rc != 0:
        results.append(Result("buildx builder", "FAIL", f"no buildx builder {builder!r} (imageBuilder)",
                              create))
    elif not driver or driver.group(1) != "docker-container":
        used = driver.group(1) if driver else "unknown"
        results.append(Result("buildx builder", "FAIL", f"builder {builder!r} uses the {used} driver, which "
                              "refuses the registry cache export", f"docker buildx rm {builder} && {create}"))
    else:
        results.append(Result("buildx builder", "ok", f"{builder} (docker-container driver)"))
    return results


# --- stack file, settings, secrets, backend -------------------------------------------------------


def load_stack(ctx: Context) -> list[Result]:
    path = ctx.root / f"Pulumi.{ctx.stack}.yaml"
    try:
        ctx.stack_file = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        return [Result("stack file", "FAIL", f"cannot read {path.name}: {exc}",
                       f"pulumi stack init {ctx.stack}  (then set the config keys of Pulumi.yaml)")]
    try:
        ctx.settings = Settings.from_mapping(stack_config(ctx.stack_file))
    except SettingsError as exc:
        return [Result("config", "FAIL", str(exc), f"pulumi config set --stack {ctx.stack} {exc.key} VALUE")]
    return [Result("config", "ok", f"{path.name}: every key valid")]


def check_secrets(ctx: Context) -> list[Result]:
    provider = str(ctx.stack_file.get("secretsprovider") or "")
    change = (f"pulumi stack change-secrets-provider --stack {ctx.stack} "
              "'azurekeyvault://<vault>.vault.azure.net/keys/<key>'")
    if not provider.startswith(CLOUD_SECRETS):
        if ctx.env.get("PULUMI_CONFIG_PASSPHRASE") or ctx.env.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
            return [Result("secrets provider", "ok", "passphrase from the environment")]
        return [Result("secrets provider", "FAIL", f"Pulumi.{ctx.stack}.yaml names no cloud "
                       f"secretsprovider (got {provider or 'none'!r}): a non-interactive run would ask for a "
                       "passphrase", change)]
    results = []
    if provider.startswith("azurekeyvault://"):
        key_id = "https://" + provider[len("azurekeyvault://"):]
        _, problem = _json(ctx, ["az", "keyvault", "key", "show", "--id", key_id, "--output", "json"])
        if problem:
            results.append(Result("secrets provider", "FAIL", f"cannot read the key {key_id}: {problem}",
                                  "grant this identity Key Vault Crypto User on the key, or create it: "
                                  "az keyvault key create --vault-name <vault> -n <key> --kty RSA"))
        else:
            results.append(Result("secrets provider", "ok", provider))
    if not ctx.stack_file.get("encryptedkey"):
        results.append(Result("secrets provider", "warn", f"Pulumi.{ctx.stack}.yaml has no encryptedkey yet: "
                              "each run would make a new data key", f"pulumi stack init {ctx.stack} "
                              f"--secrets-provider '{provider}' and commit Pulumi.{ctx.stack}.yaml"))
    return results or [Result("secrets provider", "ok", provider)]


def check_backend(ctx: Context) -> list[Result]:
    url = ctx.env.get("PULUMI_BACKEND_URL", "")
    if url.startswith("azblob://"):
        container = url[len("azblob://"):].split("?")[0].split("/")[0]
        account = re.search(r"[?&]storage_account=([^&]+)", url)
        if not account:
            return [Result("state backend", "FAIL", f"{url} names no storage_account",
                           "export PULUMI_BACKEND_URL='azblob://<container>?storage_account=<account>'")]
        data, problem = _json(ctx, ["az", "storage", "container", "show", "--auth-mode", "login",
                                    "--account-name", account.group(1), "--name", container,
                                    "--output", "json"])
        if data is None:
            return [Result("state backend", "FAIL", f"cannot read container {container} of "
                           f"{account.group(1)}: {problem}",
                           "grant Storage Blob Data Contributor on the state container "
                           "(docs/pipelines.md, State and secrets)")]
        return [Result("state backend", "ok", url.split("?")[0] + f" ({account.group(1)})")]
    rc, out, err = ctx.run(["pulumi", "whoami", "--verbose"])
    if rc != 0:
        return [Result("state backend", "FAIL", err.strip() or "not logged in to a Pulumi backend",
                       "pulumi login 'azblob://pulumi-state?storage_account=<account>'")]
    backend = re.search(r"Backend URL:\s*(\S+)", out)
    return [Result("state backend", "ok", backend.group(1) if backend else out.strip()[:60])]
