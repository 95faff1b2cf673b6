"""The one rule for missing tools: a mandatory run fails, any other run skips."""

from __future__ import annotations

import pytest

from tests.needs import MANDATORY_ENV, unavailable


@pytest.mark.parametrize("name", MANDATORY_ENV)
def test_a_mandatory_run_fails_instead_of_skipping(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for other in MANDATORY_ENV:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(name, "1")
    with pytest.raises(pytest.fail.Exception, match="no engine"):
        unavailable("no engine")


@pytest.mark.parametrize("value", ["", "0"])
def test_elsewhere_it_skips_saying_what_is_missing(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for other in MANDATORY_ENV:
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match="no engine"):
        unavailable("no engine")
