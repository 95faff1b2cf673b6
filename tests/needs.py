"""What a test does when a tool it needs is missing: skip on a developer's machine, fail where the
whole suite is mandatory (CI, `.ci/run`'s MODELSHIP_REQUIRE_DOCKER, or MODELSHIP_REQUIRE_AZURITE: any of
them makes every tool mandatory). One rule, so no test can be skipped in CI by a variation of it."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

MANDATORY_ENV = ("CI", "MODELSHIP_REQUIRE_DOCKER", "MODELSHIP_REQUIRE_AZURITE")


def mandatory() -> bool:
    """True where no test may be skipped for a missing tool."""
    return any(os.environ.get(name, "") not in ("", "0") for name in MANDATORY_ENV)


def unavailable(message: str) -> NoReturn:
    """Fail (mandatory run) or skip (anywhere else) with ``message`` naming what is missing."""
    if mandatory():
        pytest.fail(message)
    pytest.skip(message)
