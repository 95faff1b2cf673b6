"""Stack settings: every config key of the modelship stack, declared, read and validated in one place.

Each key is one field of :class:`Settings`: its type, default, rule and description. The config
key is the field's name in camelCase, and ``Pulumi.yaml``'s ``config:`` section is generated from
these fields (``python settings.py --write-pulumi-yaml``; a test fails when the file differs).

``Settings.load(pulumi.Config())`` is what ``__main__.py`` uses; ``Settings.from_mapping({...})`` builds
the same object from a plain dict (tests, the offline plan, tools) through the same validation.
Every bad value raises :class:`SettingsError` naming the key, the value and what is allowed, before
any resource is registered. Components never read config: they take typed Args built from here, and
the choices (SKUs, network policy, kubelogin mode, ...) are the components' own enums.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import typing
from collections.abc import Callable, Mapping
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

from components import choices, naming
from components.build_spec import DEFAULT_BASE_IMAGE, REVISION_RE
from components.cluster import NetworkPolicy
from components.deployer import DeployerPrincipalType
from components.kubeconfig import KubeloginMode
from components.promotion import Release
from components.registry import RegistrySku
from components.store import StorageSku
from modelship_contract.manifest import NAME_RE, VERSION_RE, is_alias_name

__all__ = ["KEYS", "Settings", "SettingsError", "stack_config"]


def stack_config(stack_file: Mapping[str, Any]) -> dict[str, str]:
    """The ``modelship:`` keys of a parsed ``Pulumi.<stack>.yaml``, as the strings ``pulumi.Config``
    returns (unset values left out)."""
    config = stack_file.get("config") or {}
    return {key.split(":", 1)[1]: str(value) for key, value in config.items()
            if key.startswith("modelship:") and value is not None}


class SettingsError(ValueError):
    """A config value breaks a rule; the message names the key, the value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(f"config key '{key}': value {value!r} is not allowed; {allowed}")


_K8S_VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+(\.[0-9]+)?$")
_VM_SIZE_RE = re.compile(r"^Standard_[A-Za-z0-9_]+$")
_CPU_RE = re.compile(r"^([0-9]+m|[0-9]+(\.[0-9]{1,3})?)$")
_MEMORY_RE = re.compile(r"^[0-9]+(Ki|Mi|Gi)$")
_PATH_RE = re.compile(r"^[^\0]+$")
_BUILDER_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
_IMAGE_REF_RE = re.compile(r"^[a-z0-9][A-Za-z0-9._/:@-]*$")


def _match(pattern: re.Pattern[str], rule: str) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        if not isinstance(value, str) or not pattern.match(value):
            raise SettingsError(key, value, rule)
        return value

    return check


def _enum(enum: type[StrEnum]) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        try:
            return enum(value)
        except ValueError:
            raise SettingsError(key, value, f"allowed: {choices.allowed(enum)}") from None

    return check


def _int_range(low: int, high: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
            number = int(value)
        if number is None or not low <= number <= high:
            raise SettingsError(key, value, f"use a whole number from {low} to {high}")
        return number

    return check


def _optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    def optional(key: str, value: Any) -> Any:
        return None if value in (None, "") else check(key, value)

    return optional


def _model_version(key: str, value: Any) -> str:
    if value == "latest":
        return value
    return _match(VERSION_RE, "use 'latest' or 1-63 of letters, digits, '.', '_' and '-'")(key, value)


def _alias(key: str, value: Any) -> str:
    if not is_alias_name(value):
        raise SettingsError(key, value, "use an alias name such as 'production'")
    return str(value)


def _webhook_url(key: str, value: Any) -> str:
    from components.release_trigger import check_webhook_url  # the one home of the credential rule

    try:
        return check_webhook_url(value if isinstance(value, str) else "", key)
    except ValueError as exc:
        raise SettingsError(key, value, str(exc)) from None


def _release(key: str, value: Any) -> Release:
    try:  # the one home of a release's rules: components.promotion
        return Release.from_json(value) if isinstance(value, str) else Release.from_mapping(value)
    except ValueError as exc:
        raise SettingsError(key, value, "use the verifying stack's release output (`pulumi stack output "
                            f"release --json --stack dev`): {exc}") from None


_STACK_REF_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*/){0,2}[A-Za-z0-9][A-Za-z0-9_.-]*$")


_DNS_LABEL_RULE = ("use an RFC 1123 label that Azure accepts as a DNS name label: 3-63 lowercase letters, "
                   "digits and '-', starting with a letter and ending alphanumeric")


def _dns_label(key: str, value: Any) -> str:
    return _match(naming.AZURE_DNS_LABEL_RE, _DNS_LABEL_RULE)(key, value)


def _location(key: str, value: Any) -> str:
    if isinstance(value, str):
        value = value.replace(" ", "").lower()
    return _match(naming.LOCATION_RE, "use an Azure region name such as 'westeurope'")(key, value)


_RFC1123 = "use an RFC 1123 label: 1-63 lowercase letters, digits and '-', starting and ending alphanumeric"


def _key(check: Callable[[str, Any], Any], description: str, default: Any = dataclasses.MISSING) -> Any:
    """A config key: a field with its rule and the description ``Pulumi.yaml`` shows.

    No default: the key is required. A None default: empty means "derived" (the description says how).
    """
    return dataclasses.field(default=default, metadata={"check": check, "description": description})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Validated settings of one modelship stack; one field per config key, in ``Pulumi.yaml``'s order."""

    location: str = _key(_location, "Azure region of every resource.", "westeurope")
    resource_group_name: str = _key(
        _match(naming.RESOURCE_GROUP_RE,
               "use 1-90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'"),
        "Resource group the stack creates and owns.", "modelship-dev")
    storage_account_name: str = _key(
        _match(naming.STORAGE_ACCOUNT_RE, "a storage account name is 3-24 lowercase letters and digits, "
               "globally unique"),
        "Model store account: 3-24 lowercase letters/digits, globally unique.")
    storage_sku: StorageSku = _key(
        _enum(StorageSku), "Storage redundancy: Standard_LRS, Standard_ZRS, Standard_GRS, Standard_RAGRS, "
        "Standard_GZRS or Standard_RAGZRS.", StorageSku.STANDARD_LRS)
    model_container: str = _key(
        _match(naming.BLOB_CONTAINER_RE, "a blob container name is 3-63 lowercase letters, digits and single "
               "'-', starting and ending alphanumeric"),
        "Private blob container holding NAME/VERSION/ model prefixes.", "models")
    blob_retention_days: int = _key(
        _int_range(1, 365), "Soft-delete retention for blobs and containers (1-365 days).", 7)
    registry_name: str = _key(
        _match(naming.REGISTRY_RE, "a registry name is 5-50 letters and digits, globally unique"),
        "Azure Container Registry: 5-50 letters/digits, globally unique.")
    registry_sku: RegistrySku = _key(
        _enum(RegistrySku), "Registry tier: Basic, Standard or Premium.", RegistrySku.BASIC)
    cluster_name: str = _key(
        _match(naming.CLUSTER_RE, "use 1-63 letters, digits, '-' and '_', starting and ending alphanumeric"),
        "AKS cluster name and DNS prefix.", "modelship-aks")
    kubernetes_version: str | None = _key(
        _optional(_match(_K8S_VERSION_RE, "use MAJOR.MINOR or MAJOR.MINOR.PATCH, or leave empty "
                         "for the AKS default")),
        "AKS Kubernetes version (MAJOR.MINOR[.PATCH]); empty for the AKS default.", None)
    node_vm_size: str = _key(
        _match(_VM_SIZE_RE, "use an Azure VM size such as 'Standard_D2s_v5'"),
        "VM size of the autoscaling system pool.", "Standard_D2s_v5")
    node_min_count: int = _key(_int_range(1, 100), "Autoscaler minimum nodes (1-100).", 1)
    node_max_count: int = _key(_int_range(1, 100), "Autoscaler maximum nodes (1-100, >= nodeMinCount).", 3)
    network_policy: NetworkPolicy = _key(
        _enum(NetworkPolicy), "Kubernetes network policy engine: cilium (Azure CNI powered by Cilium), azure "
        "or calico.", NetworkPolicy.CILIUM)
    kubelogin_mode: KubeloginMode = _key(
        _enum(KubeloginMode), "Non-interactive kubelogin login written into the kubeconfig output: azurecli, "
        "workloadidentity, spn or msi.", KubeloginMode.AZURECLI)
    deployer_principal_type: DeployerPrincipalType = _key(
        _enum(DeployerPrincipalType), "Kind of identity running pulumi up, for its role assignments: auto "
        "(ARM_CLIENT_ID/ARM_USE_MSI or the az login account), User or ServicePrincipal.",
        DeployerPrincipalType.AUTO)
    image_builder: str = _key(
        _match(_BUILDER_RE, "use the name of a buildx builder with the docker-container driver, e.g. "
               "'modelship' (`docker buildx create --name modelship --driver docker-container`)"),
        "buildx builder with the docker-container driver that builds the image and exports its registry "
        "cache.", "modelship")
    namespace: str = _key(_match(naming.RFC1123_LABEL_RE, _RFC1123),
                          "Kubernetes namespace of the model server (RFC 1123 label).", "modelship")
    replicas: int = _key(_int_range(2, 50), "Minimum model server replicas (2-50).", 2)
    max_replicas: int = _key(_int_range(2, 100), "HPA maximum replicas (2-100, >= replicas).", 5)
    target_cpu_utilization: int = _key(
        _int_range(10, 95), "HPA target average CPU utilization in percent (10-95).", 70)
    cpu_request: str = _key(_match(_CPU_RE, "use a CPU quantity such as '250m' or '1'"),
                            "CPU request per pod.", "250m")
    cpu_limit: str = _key(_match(_CPU_RE, "use a CPU quantity such as '500m' or '1'"),
                          "CPU limit per pod.", "1")
    # Empty: derived from the model's size (components/sizing.py); a value below that is refused.
    memory_request: str | None = _key(
        _optional(_match(_MEMORY_RE, "use a memory quantity such as '1280Mi', or leave empty to derive "
                         "it from the model's size")),
        "Memory request per pod; empty: model size + measured overhead (a smaller value is refused).", None)
    memory_limit: str | None = _key(
        _optional(_match(_MEMORY_RE, "use a memory quantity such as '2432Mi', or leave empty to derive "
                         "it from the model's size")),
        "Memory limit per pod; empty: 2 x model size (load peak) + measured overhead (a smaller value is "
        "refused).", None)
    startup_seconds: int | None = _key(
        _optional(_int_range(10, 3600)), "How long a pod may take to become ready (startup probe budget, "
        "10-3600); empty: derived from the model size.", None)
    dns_label: str = _key(
        _dns_label, "Azure DNS label of the public IP: <label>.<location>.cloudapp.azure.com (3-63 lowercase "
        "letters, digits, -; starts with a letter).")
    dns_zone_name: str | None = _key(
        _optional(_match(naming.DNS_ZONE_RE, "use a lowercase DNS zone such as 'models.example.com', or "
                         "leave empty for no A record")),
        "Existing Azure DNS zone to add an A record <dnsLabel>.<zone> to; empty for none.", None)
    dns_zone_resource_group: str | None = _key(
        _optional(_match(naming.RESOURCE_GROUP_RE, "use an existing resource group name, or leave empty "
                         "for resourceGroupName")),
        "Resource group of dnsZoneName; empty for resourceGroupName.", None)
    model_dir: str = _key(_match(_PATH_RE, "use a directory path"),
                          "Model directory fetched by the pipeline before pulumi up (must be app/model).",
                          "app/model")
    model_name: str = _key(_match(NAME_RE, _RFC1123), "Model to serve; must match the fetched manifest.",
                           "digits")
    model_version: str = _key(
        _model_version, "Model version to serve; 'latest' accepts whatever was fetched, else it must match "
        "the manifest.", "latest")
    release_webhook_url: str | None = _key(
        _optional(_webhook_url), "Pipeline webhook trigger (https, no credential in it); set: promoting "
        "releaseAlias starts it through Event Grid.", None)
    release_alias: str = _key(_alias, "Alias whose promotions start a release (with releaseWebhookUrl).",
                              "production")
    revision: str | None = _key(
        _optional(_match(REVISION_RE, "use 1-40 letters, digits, '.', '_' or '-' (a git sha), or "
                         "leave empty to take it from the environment or git")),
        "Source revision for image tags; empty: GITHUB_SHA, BUILD_SOURCEVERSION or git rev-parse.", None)
    base_image: str = _key(
        _match(_IMAGE_REF_RE, "use an image reference such as 'python:3.11-slim'"),
        "Base image of the model server image (BASE_IMAGE build argument).", DEFAULT_BASE_IMAGE)
    promote_from: str | None = _key(
        _optional(_match(_STACK_REF_RE, "use the stack whose verified image this stack deploys, such as "
                         "'organization/modelship/dev', or leave empty to build and test here")),
        "Stack whose verified image this stack deploys (e.g. organization/modelship/dev); set: this stack "
        "never builds (components/promotion.py). Empty: build and test here.", None)
    release: Release | None = _key(
        _optional(_release), "With promoteFrom: that stack's release output (JSON: image pinned by digest, "
        "model, version, size), set by the pipeline for each promotion.", None)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Validate ``values`` (camelCase config keys; absent or None means the default)."""
        known = {k.name for k in KEYS}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SettingsError(unknown[0], values[unknown[0]], f"known keys: {', '.join(sorted(known))}")
        fields: dict[str, Any] = {}
        for key in KEYS:
            raw = values.get(key.name)
            if raw is None:
                if key.required:
                    raise SettingsError(key.name, None, "this key is required (set it with "
                                        f"`pulumi config set {key.name} VALUE`)")
                raw = key.default
            fields[key.field] = key.check(key.name, raw) if raw is not None else None
        settings = cls(**fields)
        settings._check_relations()
        return settings

    @classmethod
    def load(cls, cfg: Any) -> Settings:
        """Read every key from a ``pulumi.Config`` (or anything with ``get(key) -> str | None``)."""
        return cls.from_mapping({k.name: cfg.get(k.name) for k in KEYS})

    @classmethod
    def from_stack_file(cls, stack: str = "dev", root: Path | None = None) -> Settings:
        """The settings a stack file (``<root>/Pulumi.<stack>.yaml``) holds, validated as :meth:`load`
        validates ``pulumi.Config``: what ``pulumi up`` on that stack would read, without the CLI."""
        import yaml

        path = (root or Path(__file__).resolve().parent) / f"Pulumi.{stack}.yaml"
        try:
            stack_file = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ValueError(f"no {path.name}: the stack's config is read from it") from None
        return cls.from_mapping(stack_config(stack_file))

    def _check_relations(self) -> None:
        if self.node_max_count < self.node_min_count:
            raise SettingsError("nodeMaxCount", self.node_max_count,
                                f"must be >= nodeMinCount ({self.node_min_count})")
        if self.max_replicas < self.replicas:
            raise SettingsError("maxReplicas", self.max_replicas, f"must be >= replicas ({self.replicas})")
        if self.promote_from and self.release is None:
            raise SettingsError("release", None, f"required with promoteFrom ({self.promote_from}): the "
                                "pipeline sets it to that stack's release output (scripts/cloud-deploy.sh "
                                "deploy-prod)")
        if self.release is not None and not self.promote_from:
            raise SettingsError("release", "(set)", "set only with promoteFrom: a stack that builds deploys "
                                "the image it tested itself")
        if self.dns_zone_resource_group and not self.dns_zone_name:
            raise SettingsError("dnsZoneResourceGroup", self.dns_zone_resource_group,
                                "set only together with dnsZoneName")

    @property
    def zone_resource_group(self) -> str:
        """Resource group of the DNS zone (defaults to the stack's own)."""
        return self.dns_zone_resource_group or self.resource_group_name


def _camel(field: str) -> str:
    head, *rest = field.split("_")
    return head + "".join(part.capitalize() for part in rest)


@dataclasses.dataclass(frozen=True)
class _Key:
    """One config key, as read from a :class:`Settings` field."""

    name: str
    """camelCase config key."""
    field: str
    check: Callable[[str, Any], Any]
    default: Any
    """The value an absent key takes (a str for enums, as config would give it); None: empty."""
    required: bool
    description: str
    yaml_type: str
    """``integer`` for whole numbers that are always set, else ``string`` (empty means derived)."""


def _keys() -> tuple[_Key, ...]:
    hints = typing.get_type_hints(Settings)
    keys = []
    for f in dataclasses.fields(Settings):
        required = f.default is dataclasses.MISSING
        default = None if required else f.default
        keys.append(_Key(
            name=_camel(f.name), field=f.name, check=f.metadata["check"],
            default=default.value if isinstance(default, Enum) else default, required=required,
            description=f.metadata["description"], yaml_type="integer" if hints[f.name] is int else "string",
        ))
    return tuple(keys)


KEYS: tuple[_Key, ...] = _keys()
"""Every config key, in the order of the fields (and of ``Pulumi.yaml``)."""


def pulumi_yaml_config() -> str:
    """The ``config:`` section of ``Pulumi.yaml``, generated from :data:`KEYS`."""
    lines = ["config:"]
    for key in KEYS:
        lines += [f"  {key.name}:", f"    type: {key.yaml_type}"]
        if not key.required:
            default = "" if key.default is None else key.default
            lines.append(f"    default: {json.dumps(default)}")
        lines.append(f"    description: {json.dumps(key.description)}")
    return "\n".join(lines) + "\n"


def write_pulumi_yaml(path: Path) -> bool:
    """Replace the ``config:`` section (the file's last) of ``path``; True when the file changed."""
    text = path.read_text()
    start = text.index("\nconfig:\n") + 1
    updated = text[:start] + pulumi_yaml_config()
    if updated == text:
        return False
    path.write_text(updated)
    return True


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-pulumi-yaml"]:
        sys.exit("usage: python settings.py --write-pulumi-yaml")
    changed = write_pulumi_yaml(Path(__file__).resolve().parent / "Pulumi.yaml")
    print("Pulumi.yaml: config section " + ("rewritten" if changed else "already up to date"))
