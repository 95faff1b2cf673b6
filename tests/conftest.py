"""Fixtures shared by every test area."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def azurite() -> Iterator[object]:
    """One Azurite blob emulator for the whole session, on a free 127.0.0.1 port.

    Installs the pinned npm package under .local/azurite on first use. Without Node.js the tests
    that need it skip, unless CI or MODELSHIP_REQUIRE_AZURITE=1 is set: then they fail.
    Use ``azurite.connection_string`` (never print it) and ``azurite.blob_endpoint``.
    """
    from modelstore.emulator import Azurite

    if not (shutil.which("node") and shutil.which("npm")):
        message = "Azurite needs Node.js and npm, which are not installed"
        if os.environ.get("CI") or os.environ.get("MODELSHIP_REQUIRE_AZURITE") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with Azurite() as emulator:
        yield emulator
