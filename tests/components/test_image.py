"""ModelImage's Args."""

from __future__ import annotations

import pytest

from components.image import ModelImageArgs


def test_an_unknown_platform_is_refused() -> None:
    with pytest.raises(ValueError, match="platform 'linux/z80'"):
        ModelImageArgs(login_server="x", repository="r", tag="t", context="app",
                       dockerfile="app/Dockerfile", platform="linux/z80")
