"""What a local model container may use and how its end is explained: memory, start-up wait, OOM kills.

The figures come from :mod:`components.sizing`, the same as the stack's Deployment, so the
container tested and run here gets the limit and start-up budget a pod of the same model gets.
"""

from __future__ import annotations

from collections.abc import Callable

from components import sizing
from delivery import engine
from modelship_contract.manifest import ModelManifest

KEYS = ("memoryRequest", "MODELSHIP_MEMORY", "MODELSHIP_STARTUP_SECONDS")
"""Names of the local settings in errors (the request has no local counterpart)."""


def resolve(manifest: ModelManifest, memory: str, startup_seconds: int | None) -> sizing.Resources:
    """The container's resources for ``manifest``; ``memory`` empty = derived. Raises SizingError."""
    return sizing.for_model(manifest.size, model=manifest.ref, memory_limit=memory or None,
                            startup_seconds=startup_seconds, keys=KEYS)


def stopped(name: str, manifest: ModelManifest, memory: str) -> Callable[[], str | None]:
    """A check for :func:`delivery.smoke.wait_ready`: why container ``name`` stopped, or None.

    An out-of-memory kill names the limit, the model's size and the limit it needs.
    """

    def check() -> str | None:
        state = engine.container_state(name)
        if state is None:
            return f"container {name} no longer exists"
        reason = engine.describe_exit(state)
        if reason is None:
            return None
        message = f"container {name} stopped: {reason}"
        if state.get("State", {}).get("OOMKilled"):
            need = sizing.needed_limit_mib(manifest.size)
            message += (
                f". Its memory limit is {memory}; model {manifest.ref} is "
                f"{sizing.human(manifest.size)} and needs at least {need}m "
                f"({sizing.limit_reason(manifest.size)}). Leave MODELSHIP_MEMORY unset to derive it, "
                f"or set it to {need}m or more"
            )
        return message

    return check
