"""Server settings from the environment: defaults, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelserver.settings import Settings, SettingsError


def test_defaults_match_the_image() -> None:
    settings = Settings.from_env({})
    assert settings.model_dir == Path("/opt/model")
    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 8080, 1)


def test_environment_overrides_and_round_trips() -> None:
    env = {
        "MODELSHIP_MODEL_DIR": "/m",
        "MODELSHIP_PORT": "9000",
        "MODELSHIP_WORKERS": "2",
        "MODELSHIP_MAX_BODY_BYTES": "2048",
        "MODELSHIP_LOG_LEVEL": "WARNING",
        "MODELSHIP_ACCESS_LOG": "no",
    }
    settings = Settings.from_env(env)
    assert (settings.port, settings.workers, settings.max_body_bytes) == (9000, 2, 2048)
    assert settings.log_level == "warning" and settings.access_log is False
    assert Settings.from_env(settings.to_env()) == settings


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODELSHIP_PORT": "http"}, "MODELSHIP_PORT='http' is not an integer"),
        ({"MODELSHIP_PORT": "70000"}, r"MODELSHIP_PORT=70000 is out of range \(allowed: 1..65535\)"),
        ({"MODELSHIP_WORKERS": "0"}, "MODELSHIP_WORKERS=0 is out of range"),
        ({"MODELSHIP_LOG_LEVEL": "loud"}, "MODELSHIP_LOG_LEVEL='loud' is not one of: debug, info"),
        ({"MODELSHIP_ACCESS_LOG": "maybe"}, "MODELSHIP_ACCESS_LOG='maybe' is not a boolean"),
    ],
)
def test_bad_values_name_the_key(env: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)
