"""Fixtures shared by every test area."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from modelstore import signing
from tests.needs import unavailable


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refresh the contract copy a `make up` staged into app/ (the build context), if there is one.

    Server subprocesses of the tests run with app/ first on their path, as in the image, so a copy
    left by an older build would shadow the package under test.
    """
    from pathlib import Path

    from components.build_spec import CONTRACT_SUBDIR, stage_contract

    app = Path(__file__).resolve().parent.parent / "app"
    if (app / CONTRACT_SUBDIR).exists():
        stage_contract(app)


@pytest.fixture(scope="session")
def azurite() -> Iterator[object]:
    """One Azurite blob emulator for the whole session, on a free 127.0.0.1 port.

    Installs the pinned npm package under .local/azurite on first use. Without Node.js the tests
    that need it skip, unless CI or MODELSHIP_REQUIRE_AZURITE=1 is set: then they fail.
    Use ``azurite.connection_string`` (never print it) and ``azurite.blob_endpoint``.
    """
    from delivery.azurite import Azurite

    if not (shutil.which("node") and shutil.which("npm")):
        unavailable("Azurite needs Node.js and npm, which are not installed")
    with Azurite() as emulator:
        yield emulator


@pytest.fixture(scope="session")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The image's local base, built once per machine by the code path `make up` uses.

    Tests that build the image depend on this fixture, so the base exists before the first build
    whatever the test order, and nothing ever pulls from Docker Hub (unreachable here).
    ``MODELSHIP_BASE_IMAGE`` overrides it, as it does for `make up`.
    """
    from delivery import engine
    from delivery.baseimage import BaseImageError, ensure_base_image

    if not engine.engine_available():
        unavailable(f"no Docker Engine answers ({engine.DOCKER} info failed); run scripts/bootstrap.sh")
    if os.environ.get("MODELSHIP_BASE_IMAGE"):
        return os.environ["MODELSHIP_BASE_IMAGE"]
    log_file = tmp_path_factory.getbasetemp() / "base-image.log"
    try:
        return ensure_base_image(log_file=log_file)
    except BaseImageError as exc:
        tail = log_file.read_text(errors="replace")[-3000:] if log_file.exists() else ""
        pytest.fail(f"{exc}\n{tail}")


@pytest.fixture(scope="session", autouse=True)
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[signing.KeyPair]:
    """A model signing key of the test session, trusted by fetch and the image builds it triggers.

    Set through the environment (``MODELSHIP_SIGNING_KEY``, ``MODELSHIP_TRUSTED_KEYS``) so that every
    store, CLI run and local delivery in the session uses it and none touches the machine's own key.
    """
    keys = signing.KeyPair.create(tmp_path_factory.mktemp("signing"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(signing.SIGNING_KEY_ENV, str(keys.private_key))
        mp.setenv(signing.TRUSTED_KEYS_ENV, str(keys.trusted_dir))
        yield keys
