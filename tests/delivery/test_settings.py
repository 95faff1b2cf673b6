"""Settings of the local flow (delivery/settings.py): defaults, validation, Docker limits. No Docker."""

from __future__ import annotations

import re

import pytest

from delivery.engine import RunOptions
from delivery.settings import ROOT, LocalSettings, k8s_cpu_to_docker, k8s_memory_to_docker


def test_defaults_match_the_docs() -> None:
    """The defaults docs/local.md lists for the environment variables are the ones the code uses."""
    doc = " ".join((ROOT / "docs" / "local.md").read_text().split())
    documented = dict(re.findall(r"`(MODELSHIP_[A-Z_]+)` \(`?([^`),]+)`?[,)]", doc))
    s = LocalSettings.from_env({})
    keys = ("MODELSHIP_PORT", "MODELSHIP_REGISTRY_PORT", "MODELSHIP_AZURITE_PORT", "MODELSHIP_STATE_DIR",
            "MODELSHIP_STORE_CONTAINER", "MODELSHIP_REPOSITORY")
    assert {k: documented.get(k) for k in keys} == {
        "MODELSHIP_PORT": str(s.port), "MODELSHIP_REGISTRY_PORT": str(s.registry_port),
        "MODELSHIP_AZURITE_PORT": str(s.azurite_port), "MODELSHIP_STATE_DIR": s.state_dir.name,
        "MODELSHIP_STORE_CONTAINER": s.store_container, "MODELSHIP_REPOSITORY": s.repository,
    }
    assert (s.port, s.registry_port, s.azurite_port) == (8080, 5000, 10000)
    assert s.container == "modelship-digits"
    assert s.context.name == "app"
    assert s.state_dir.name == ".local"


def test_run_options_are_the_deployments_security_settings() -> None:
    args = LocalSettings.from_env({"MODELSHIP_MEMORY": "256m", "MODELSHIP_CPUS": "0.5"}).run_options.args()
    joined = " ".join(args)
    assert "--read-only" in args
    assert "--user 10001:10001" in joined
    assert "--cap-drop ALL" in joined
    assert "--security-opt no-new-privileges" in joined
    assert "--memory 256m" in joined and "--cpus 0.5" in joined
    assert "--tmpfs /tmp:rw" in joined
    assert RunOptions(memory="1g", cpus="2").container_port == 8080


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODELSHIP_PORT": "http"}, "MODELSHIP_PORT must be a port number, got 'http'"),
        ({"MODELSHIP_PORT": "80"}, "MODELSHIP_PORT must be a port in 1024-65535, got 80"),
        ({"MODELSHIP_REGISTRY_PORT": "8080"}, "must differ"),
        ({"MODELSHIP_INSTANCE": "My_App"}, "MODELSHIP_INSTANCE 'My_App' is not allowed: use 1-31 lowercase"),
        ({"MODELSHIP_MEMORY": "512MB"}, "MODELSHIP_MEMORY '512MB' is not allowed: use a number with k"),
        ({"MODELSHIP_CPUS": "0"}, "MODELSHIP_CPUS '0' is not allowed"),
        ({"MODELSHIP_REPOSITORY": "Modelship/Digits"}, "MODELSHIP_REPOSITORY 'Modelship/Digits' is not"),
        ({"MODELSHIP_MODEL": "digits@1.0.0@2"}, "MODEL='digits@1.0.0@2' is not allowed: .* digits@1.1.0"),
        ({"MODELSHIP_MODEL": "digits@../x"}, "MODEL='digits@../x' is not allowed"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        LocalSettings.from_env(env)


def test_model_names_a_version_to_deploy() -> None:
    default = LocalSettings.from_env({})
    assert (default.model, default.model_version, default.model_ref) == ("digits", "latest", "digits@latest")
    pinned = LocalSettings.from_env({"MODELSHIP_MODEL": "digits@1.1.0"})
    assert (pinned.model, pinned.model_version) == ("digits", "1.1.0")
    assert pinned.container == "modelship-digits", "the container name never carries the version"


def test_k8s_quantities_become_docker_limits() -> None:
    assert k8s_memory_to_docker("512Mi") == "512m"
    assert k8s_memory_to_docker("2Gi") == "2g"
    assert k8s_cpu_to_docker("500m") == "0.5"
    assert k8s_cpu_to_docker("1") == "1"
    with pytest.raises(ValueError, match="memory quantity '1G' is not one of"):
        k8s_memory_to_docker("1G")


def test_the_alias_a_canary_rollback_moves_back() -> None:
    """`make up MODEL=digits@production` names the alias; `make watch` pins the version and passes
    the alias (--from-alias); a pinned version alone names none, so no alias is moved."""
    import dataclasses

    assert LocalSettings.from_env({"MODELSHIP_MODEL": "digits@production"}).alias == "production"
    pinned = LocalSettings.from_env({"MODELSHIP_MODEL": "digits@1.3.0"})
    assert pinned.alias is None and LocalSettings.from_env({}).alias is None  # latest is no alias
    assert dataclasses.replace(pinned, release_alias="staging").alias == "staging"
    with pytest.raises(ValueError, match="--from-alias 'Prod' is not an alias name"):
        dataclasses.replace(pinned, release_alias="Prod")
