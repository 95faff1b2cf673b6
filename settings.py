"""Stack settings: every config key of the modelship stack, read and validated in one place.

``Settings.load(pulumi.Config())`` is what ``__main__.py`` uses; ``Settings.from_mapping({...})`` builds
the same object from a plain dict (tests, the offline plan, tools) through the same validation.
Every bad value raises :class:`SettingsError` naming the key, the value and what is allowed, before
any resource is registered. Components never read config: they take typed Args built from here.

The keys are declared (type, default, description) in ``Pulumi.yaml``; ``KEYS`` below is the same
list, and a test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A config value breaks a rule; the message names the key, the value and what is allowed."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(f"config key '{key}': value {value!r} is not allowed; {allowed}")


class StorageSku(StrEnum):
    """Redundancy of the model store account (Standard general-purpose v2 SKUs)."""

    STANDARD_LRS = "Standard_LRS"
    STANDARD_ZRS = "Standard_ZRS"
    STANDARD_GRS = "Standard_GRS"
    STANDARD_RAGRS = "Standard_RAGRS"
    STANDARD_GZRS = "Standard_GZRS"
    STANDARD_RAGZRS = "Standard_RAGZRS"


class RegistrySku(StrEnum):
    """Azure Container Registry tiers."""

    BASIC = "Basic"
    STANDARD = "Standard"
    PREMIUM = "Premium"


class NetworkPolicy(StrEnum):
    """Network policy engines AKS supports with the Azure CNI overlay.

    ``cilium`` (Azure CNI powered by Cilium, the eBPF dataplane) is the default: Azure Network
    Policy Manager (``azure``) is being retired on AKS in favour of it (docs/azure.md).
    """

    CILIUM = "cilium"
    AZURE = "azure"
    CALICO = "calico"


class KubeloginMode(StrEnum):
    """How the exported kubeconfig's ``kubelogin get-token`` signs in; all are non-interactive.

    ``azurecli`` reuses ``az login`` (the pipeline's OIDC login); ``workloadidentity`` reads the
    federated token from ``AZURE_FEDERATED_TOKEN_FILE``; ``spn`` reads a client secret from
    ``AAD_SERVICE_PRINCIPAL_CLIENT_SECRET``; ``msi`` uses the VM's managed identity.
    """

    AZURECLI = "azurecli"
    WORKLOADIDENTITY = "workloadidentity"
    SPN = "spn"
    MSI = "msi"


class DeployerPrincipalType(StrEnum):
    """What the identity running ``pulumi up`` is, for the role assignments the stack gives it.

    ``auto`` detects it at deploy time (:mod:`components.deployer`): ``ServicePrincipal`` when the
    azure-native provider signs in as one (``ARM_CLIENT_ID``, ``ARM_USE_MSI``), else the kind of
    the ``az login`` account. ARM refuses an assignment whose type does not match the principal.
    """

    AUTO = "auto"
    USER = "User"
    SERVICE_PRINCIPAL = "ServicePrincipal"


_LOCATION_RE = re.compile(r"^[a-z][a-z0-9]{2,39}$")
_RESOURCE_GROUP_RE = re.compile(r"^[-\w._()]{0,89}[-\w_()]$")
_STORAGE_ACCOUNT_RE = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER_RE = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_REGISTRY_RE = re.compile(r"^[A-Za-z0-9]{5,50}$")
_CLUSTER_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$")
_K8S_VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+(\.[0-9]+)?$")
_VM_SIZE_RE = re.compile(r"^Standard_[A-Za-z0-9_]+$")
_RFC1123_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DNS_ZONE_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_CPU_RE = re.compile(r"^([0-9]+m|[0-9]+(\.[0-9]{1,3})?)$")
_MEMORY_RE = re.compile(r"^[0-9]+(Ki|Mi|Gi)$")
_MODEL_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,62}$")
_REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
_PATH_RE = re.compile(r"^[^\0]+$")


def _match(pattern: re.Pattern[str], rule: str) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        if not isinstance(value, str) or not pattern.match(value):
            raise SettingsError(key, value, rule)
        return value

    return check


def _enum(enum: type[Enum]) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        try:
            return enum(value)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in enum)  # type: ignore[attr-defined]
            raise SettingsError(key, value, f"allowed: {allowed}") from None

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
    return _match(_MODEL_VERSION_RE, "use 'latest' or 1-63 of letters, digits, '.', '_' and '-'")(key, value)


_ALIAS_RE = re.compile(r"^(?!latest$)[a-z][a-z0-9-]{0,62}$")  # modelserver.manifest.ALIAS_RE, minus 'latest'


def _webhook_url(key: str, value: Any) -> str:
    from components.release_trigger import check_webhook_url  # the one home of the credential rule

    try:
        return check_webhook_url(value if isinstance(value, str) else "", key)
    except ValueError as exc:
        raise SettingsError(key, value, str(exc)) from None


# Azure's rule for a public IP's DNS name label, stricter than RFC 1123: 3+ characters, a letter first.
_AZURE_DNS_LABEL_RE = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")


_DNS_LABEL_RULE = ("use an RFC 1123 label that Azure accepts as a DNS name label: 3-63 lowercase letters, "
                   "digits and '-', starting with a letter and ending alphanumeric")


def _dns_label(key: str, value: Any) -> str:
    return _match(_AZURE_DNS_LABEL_RE, _DNS_LABEL_RULE)(key, value)


def _location(key: str, value: Any) -> str:
    if isinstance(value, str):
        value = value.replace(" ", "").lower()
    return _match(_LOCATION_RE, "use an Azure region name such as 'westeurope'")(key, value)


@dataclasses.dataclass(frozen=True)
class _Key:
    name: str
    field: str
    check: Callable[[str, Any], Any]
    default: Any
    required: bool = False


_RFC1123 = "use an RFC 1123 label: 1-63 lowercase letters, digits and '-', starting and ending alphanumeric"

KEYS: tuple[_Key, ...] = (
    _Key("location", "location", _location, "westeurope"),
    _Key("resourceGroupName", "resource_group_name",
         _match(_RESOURCE_GROUP_RE, "use 1-90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'"),
         "modelship-dev"),
    _Key("storageAccountName", "storage_account_name",
         _match(_STORAGE_ACCOUNT_RE, "a storage account name is 3-24 lowercase letters and digits, "
                "globally unique"), None, required=True),
    _Key("storageSku", "storage_sku", _enum(StorageSku), StorageSku.STANDARD_LRS.value),
    _Key("modelContainer", "model_container",
         _match(_CONTAINER_RE, "a blob container name is 3-63 lowercase letters, digits and single "
                "'-', starting and ending alphanumeric"), "models"),
    _Key("blobRetentionDays", "blob_retention_days", _int_range(1, 365), 7),
    _Key("registryName", "registry_name",
         _match(_REGISTRY_RE, "a registry name is 5-50 letters and digits, globally unique"),
         None, required=True),
    _Key("registrySku", "registry_sku", _enum(RegistrySku), RegistrySku.BASIC.value),
    _Key("clusterName", "cluster_name",
         _match(_CLUSTER_RE, "use 1-63 letters, digits, '-' and '_', starting and ending alphanumeric"),
         "modelship-aks"),
    _Key("kubernetesVersion", "kubernetes_version",
         _optional(_match(_K8S_VERSION_RE, "use MAJOR.MINOR or MAJOR.MINOR.PATCH, or leave empty "
                          "for the AKS default")), None),
    _Key("nodeVmSize", "node_vm_size",
         _match(_VM_SIZE_RE, "use an Azure VM size such as 'Standard_D2s_v5'"), "Standard_D2s_v5"),
    _Key("nodeMinCount", "node_min_count", _int_range(1, 100), 1),
    _Key("nodeMaxCount", "node_max_count", _int_range(1, 100), 3),
    _Key("networkPolicy", "network_policy", _enum(NetworkPolicy), NetworkPolicy.CILIUM.value),
    _Key("kubeloginMode", "kubelogin_mode", _enum(KubeloginMode), KubeloginMode.AZURECLI.value),
    _Key("deployerPrincipalType", "deployer_principal_type", _enum(DeployerPrincipalType),
         DeployerPrincipalType.AUTO.value),
    _Key("imageBuilder", "image_builder",
         _match(re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$"), "use the name of a buildx builder with the "
                "docker-container driver, e.g. 'modelship' (`docker buildx create --name modelship "
                "--driver docker-container`)"), "modelship"),
    _Key("namespace", "namespace", _match(_RFC1123_LABEL_RE, _RFC1123), "modelship"),
    _Key("replicas", "replicas", _int_range(2, 50), 2),
    _Key("maxReplicas", "max_replicas", _int_range(2, 100), 5),
    _Key("targetCpuUtilization", "target_cpu_utilization", _int_range(10, 95), 70),
    _Key("cpuRequest", "cpu_request", _match(_CPU_RE, "use a CPU quantity such as '250m' or '1'"), "250m"),
    _Key("cpuLimit", "cpu_limit", _match(_CPU_RE, "use a CPU quantity such as '500m' or '1'"), "1"),
    # Empty: derived from the model's size (components/sizing.py); a value below that is refused.
    _Key("memoryRequest", "memory_request",
         _optional(_match(_MEMORY_RE, "use a memory quantity such as '1280Mi', or leave empty to derive "
                          "it from the model's size")), None),
    _Key("memoryLimit", "memory_limit",
         _optional(_match(_MEMORY_RE, "use a memory quantity such as '2432Mi', or leave empty to derive "
                          "it from the model's size")), None),
    _Key("startupSeconds", "startup_seconds", _optional(_int_range(10, 3600)), None),
    _Key("dnsLabel", "dns_label", _dns_label, None, required=True),
    _Key("dnsZoneName", "dns_zone_name",
         _optional(_match(_DNS_ZONE_RE, "use a lowercase DNS zone such as 'models.example.com', or "
                          "leave empty for no A record")), None),
    _Key("dnsZoneResourceGroup", "dns_zone_resource_group",
         _optional(_match(_RESOURCE_GROUP_RE, "use an existing resource group name, or leave empty "
                          "for resourceGroupName")), None),
    _Key("modelDir", "model_dir", _match(_PATH_RE, "use a directory path"), "app/model"),
    _Key("modelName", "model_name", _match(_RFC1123_LABEL_RE, _RFC1123), "digits"),
    _Key("modelVersion", "model_version", _model_version, "latest"),
    _Key("releaseWebhookUrl", "release_webhook_url", _optional(_webhook_url), None),
    _Key("releaseAlias", "release_alias", _match(_ALIAS_RE, "use an alias name such as 'production'"),
         "production"),
    _Key("revision", "revision",
         _optional(_match(_REVISION_RE, "use 1-40 letters, digits, '.', '_' or '-' (a git sha), or "
                          "leave empty to take it from the environment or git")), None),
    _Key("baseImage", "base_image",
         _match(re.compile(r"^[a-z0-9][A-Za-z0-9._/:@-]*$"), "use an image reference such as "
                "'python:3.11-slim'"), "python:3.11-slim"),
)
"""Every config key, in the order of ``Pulumi.yaml``."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Validated settings of one modelship stack."""

    storage_account_name: str
    """Storage account holding the models (globally unique)."""
    registry_name: str
    """Azure Container Registry name (globally unique)."""
    dns_label: str
    """Azure DNS label of the service's public IP: ``<label>.<location>.cloudapp.azure.com``."""
    location: str = "westeurope"
    resource_group_name: str = "modelship-dev"
    storage_sku: StorageSku = StorageSku.STANDARD_LRS
    model_container: str = "models"
    blob_retention_days: int = 7
    """Soft-delete retention for blobs and containers, in days."""
    registry_sku: RegistrySku = RegistrySku.BASIC
    cluster_name: str = "modelship-aks"
    kubernetes_version: str | None = None
    """None: the AKS default version."""
    node_vm_size: str = "Standard_D2s_v5"
    node_min_count: int = 1
    node_max_count: int = 3
    network_policy: NetworkPolicy = NetworkPolicy.CILIUM
    kubelogin_mode: KubeloginMode = KubeloginMode.AZURECLI
    deployer_principal_type: DeployerPrincipalType = DeployerPrincipalType.AUTO
    """``auto``: detected at deploy time (components.deployer); else ``User`` or ``ServicePrincipal``."""
    image_builder: str = "modelship"
    """buildx builder (docker-container driver) that builds and exports the registry cache."""
    namespace: str = "modelship"
    replicas: int = 2
    max_replicas: int = 5
    target_cpu_utilization: int = 70
    cpu_request: str = "250m"
    cpu_limit: str = "1"
    memory_request: str | None = None
    """None: the model's size plus the measured overhead (``components.sizing``)."""
    memory_limit: str | None = None
    """None: twice the model's size (the load peak) plus the measured overhead."""
    startup_seconds: int | None = None
    """Start-up probe budget; None: derived from the model's size."""
    dns_zone_name: str | None = None
    """Azure DNS zone for an A record; None: no record, the cloudapp name only."""
    dns_zone_resource_group: str | None = None
    model_dir: str = "app/model"
    """Model directory fetched by the pipeline before ``pulumi up`` (relative to the project)."""
    model_name: str = "digits"
    model_version: str = "latest"
    """``latest``: whatever was fetched; otherwise the fetched manifest must carry this version."""
    release_webhook_url: str | None = None
    """The pipeline's webhook trigger; set: a promotion of ``release_alias`` starts it (Event Grid)."""
    release_alias: str = "production"
    revision: str | None = None
    """Source revision for image tags; None: from GITHUB_SHA / BUILD_SOURCEVERSION / git."""
    base_image: str = "python:3.11-slim"

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
            config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        except FileNotFoundError:
            raise ValueError(f"no {path.name}: the stack's config is read from it") from None
        # pulumi.Config.get returns strings, so pass what the YAML holds as strings too.
        return cls.from_mapping({key.split(":", 1)[1]: str(value) for key, value in config.items()
                                 if key.startswith("modelship:") and value is not None})

    def _check_relations(self) -> None:
        if self.node_max_count < self.node_min_count:
            raise SettingsError("nodeMaxCount", self.node_max_count,
                                f"must be >= nodeMinCount ({self.node_min_count})")
        if self.max_replicas < self.replicas:
            raise SettingsError("maxReplicas", self.max_replicas, f"must be >= replicas ({self.replicas})")
        if self.dns_zone_resource_group and not self.dns_zone_name:
            raise SettingsError("dnsZoneResourceGroup", self.dns_zone_resource_group,
                                "set only together with dnsZoneName")

    @property
    def zone_resource_group(self) -> str:
        """Resource group of the DNS zone (defaults to the stack's own)."""
        return self.dns_zone_resource_group or self.resource_group_name
