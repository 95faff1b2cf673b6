"""Settings: every key validated before any resource exists; errors name key, value and rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import settings as settings_module
from components.cluster import NetworkPolicy
from components.kubeconfig import KubeloginMode
from components.registry import RegistrySku
from components.store import StorageSku
from settings import KEYS, Settings, SettingsError
from tests.components.conftest import BASE, make_settings

ROOT = Path(__file__).resolve().parents[1]


class FakeConfig:
    """What ``pulumi.Config`` offers the loader: ``get(key) -> str | None``."""

    def __init__(self, values: dict[str, str]):
        self.values = values

    def get(self, key: str) -> str | None:
        return self.values.get(key)


def test_defaults_and_types() -> None:
    s = make_settings()
    assert s.storage_sku is StorageSku.STANDARD_LRS and s.registry_sku is RegistrySku.BASIC
    assert s.network_policy is NetworkPolicy.CILIUM and s.kubelogin_mode is KubeloginMode.AZURECLI
    assert (s.replicas, s.max_replicas, s.node_min_count, s.node_max_count) == (2, 5, 1, 3)
    assert (s.model_dir, s.model_name, s.model_version) == ("app/model", "digits", "latest")
    assert s.kubernetes_version is None and s.dns_zone_name is None and s.revision is None


def test_load_reads_strings_from_pulumi_config() -> None:
    cfg = FakeConfig({**BASE, "replicas": "3", "maxReplicas": "6", "registrySku": "Premium",
                      "location": "West Europe", "kubernetesVersion": ""})
    s = Settings.load(cfg)
    assert (s.replicas, s.max_replicas, s.location) == (3, 6, "westeurope")
    assert s.registry_sku is RegistrySku.PREMIUM
    assert s.kubernetes_version is None


@pytest.mark.parametrize(("key", "value", "rule"), [
    ("storageAccountName", "Model_Store", "3-24 lowercase letters and digits"),
    ("storageAccountName", "ab", "3-24 lowercase letters and digits"),
    ("storageAccountName", "a" * 25, "3-24 lowercase letters and digits"),
    ("registryName", "my-registry", "5-50 letters and digits"),
    ("registryName", "acr", "5-50 letters and digits"),
    ("dnsLabel", "Model_Ship", "RFC 1123 label"),
    ("dnsLabel", "-modelship", "RFC 1123 label"),
    ("dnsLabel", "a" * 64, "RFC 1123 label"),
    # Valid RFC 1123 labels that Azure still refuses as a public IP's DNS name label.
    ("dnsLabel", "1modelship", "starting with a letter"),
    ("dnsLabel", "ab", "3-63 lowercase"),
    ("namespace", "Bad.NS", "RFC 1123 label"),
    ("modelContainer", "a--b", "blob container name"),
    ("replicas", 1, "from 2 to 50"),
    ("replicas", "two", "from 2 to 50"),
    ("nodeMinCount", 0, "from 1 to 100"),
    ("nodeMaxCount", 101, "from 1 to 100"),
    ("blobRetentionDays", 400, "from 1 to 365"),
    ("targetCpuUtilization", 5, "from 10 to 95"),
    ("storageSku", "Premium_LRS", "allowed: Standard_LRS, Standard_ZRS"),
    ("registrySku", "Gold", "allowed: Basic, Standard, Premium"),
    ("networkPolicy", "cillium", "allowed: cilium, azure, calico"),
    ("deployerPrincipalType", "user", "allowed: auto, User, ServicePrincipal"),
    ("imageBuilder", "-x", "docker-container driver"),
    ("kubeloginMode", "devicecode", "allowed: azurecli, workloadidentity, spn, msi"),
    ("kubernetesVersion", "latest", "MAJOR.MINOR"),
    ("cpuRequest", "lots", "CPU quantity"),
    ("memoryLimit", "512MB", "memory quantity"),
    ("dnsZoneName", "Models.Example.COM.", "lowercase DNS zone"),
    ("modelVersion", "v 2", "'latest' or 1-63"),
    ("revision", "abc def", "1-40 letters"),
])
def test_bad_values_name_key_value_and_rule(key: str, value: object, rule: str) -> None:
    with pytest.raises(SettingsError) as err:
        make_settings(**{key: value})
    message = str(err.value)
    assert f"config key '{key}'" in message
    assert repr(value) in message
    assert rule in message


def test_relations_between_keys() -> None:
    with pytest.raises(SettingsError, match=r"'nodeMaxCount': value 1 .*>= nodeMinCount \(2\)"):
        make_settings(nodeMinCount=2, nodeMaxCount=1)
    with pytest.raises(SettingsError, match=r"'maxReplicas': value 3 .*>= replicas \(4\)"):
        make_settings(replicas=4, maxReplicas=3)
    with pytest.raises(SettingsError, match=r"'dnsZoneResourceGroup'.*only together with dnsZoneName"):
        make_settings(dnsZoneResourceGroup="dns-rg")


def test_required_and_unknown_keys() -> None:
    with pytest.raises(SettingsError, match=r"'registryName': value None .*required"):
        Settings.from_mapping({"storageAccountName": "abc123", "dnsLabel": "x"})
    with pytest.raises(SettingsError, match=r"'replica': .*known keys: .*replicas"):
        make_settings(replica=3)


def test_pulumi_yaml_declares_every_key_with_type_default_description() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "modelship"
    assert project["runtime"]["name"] == "python"
    assert project["runtime"]["options"]["virtualenv"] == ".venv"
    declared = project["config"]
    assert list(declared) == [k.name for k in KEYS]
    for key in KEYS:
        entry = declared[key.name]
        assert entry["type"] in ("string", "integer") and entry["description"]
        assert ("default" in entry) is (not key.required), key.name
        if not key.required:
            # The defaults the CLI shows are the ones Settings applies.
            assert entry["default"] == ("" if key.default is None else key.default), key.name


def test_pulumi_yaml_config_is_generated_from_the_settings_fields() -> None:
    text = (ROOT / "Pulumi.yaml").read_text()
    section = text[text.index("\nconfig:\n") + 1:]
    assert section == settings_module.pulumi_yaml_config(), (
        "Pulumi.yaml's config section differs from the Settings fields: run "
        "`.venv/bin/python settings.py --write-pulumi-yaml`")


def test_write_pulumi_yaml_replaces_only_the_config_section(tmp_path: Path) -> None:
    target = tmp_path / "Pulumi.yaml"
    target.write_text("name: modelship\nruntime: python\nconfig:\n  stale:\n    type: string\n")
    assert settings_module.write_pulumi_yaml(target)
    written = yaml.safe_load(target.read_text())
    assert written["name"] == "modelship" and written["runtime"] == "python"
    assert list(written["config"]) == [k.name for k in KEYS]
    assert not settings_module.write_pulumi_yaml(target)


def test_config_keys_are_the_fields_in_camel_case() -> None:
    names = {k.field: k.name for k in KEYS}
    assert names["resource_group_name"] == "resourceGroupName"
    assert names["dns_zone_resource_group"] == "dnsZoneResourceGroup"
    assert len(set(names.values())) == len(names)


def _stack_files() -> list[Path]:
    return sorted(ROOT.glob("Pulumi.*.yaml"))


def _stack_values(path: Path) -> dict[str, object]:
    stack = yaml.safe_load(path.read_text())["config"]
    return {k.split(":", 1)[1]: v for k, v in stack.items() if k.startswith("modelship:")}


@pytest.mark.parametrize("stack_file", _stack_files(), ids=lambda p: p.name)
def test_every_stack_file_sets_only_known_keys(stack_file: Path) -> None:
    unknown = sorted(set(_stack_values(stack_file)) - {k.name for k in KEYS})
    assert not unknown, f"{stack_file.name} sets unknown keys {unknown}: declare them in settings.Settings"


def test_dev_stack_sets_every_key_and_is_valid() -> None:
    values = _stack_values(ROOT / "Pulumi.dev.yaml")
    assert set(values) == {k.name for k in KEYS}
    s = Settings.load(FakeConfig({k: str(v) for k, v in values.items()}))
    assert s.storage_account_name == "modelshipdevmodels01"


def test_from_stack_file_reads_what_pulumi_config_would(tmp_path: Path) -> None:
    """``Settings.from_stack_file`` (the plan, the local flow's limits) validates like ``load``."""
    stack = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    values = {k.split(":", 1)[1]: str(v) for k, v in stack.items()
              if k.startswith("modelship:") and v is not None}
    assert Settings.from_stack_file("dev", ROOT) == Settings.load(FakeConfig(values))
    (tmp_path / "Pulumi.bad.yaml").write_text(yaml.safe_dump({"config": {**stack, "modelship:replicas": 0}}))
    with pytest.raises(SettingsError, match="replicas"):
        Settings.from_stack_file("bad", tmp_path)
    with pytest.raises(ValueError, match=r"no Pulumi.prod2.yaml: the stack's config is read from it"):
        Settings.from_stack_file("prod2", tmp_path)
