"""The contract's tests use the app's real demo model (trained once per session)."""

from tests.app.conftest import model_dir

__all__ = ["model_dir"]
