"""Server settings, read from the environment in one place (the CLI in ``__main__`` sets the same keys).

Every key is ``MODELSHIP_*``; a bad value raises ``SettingsError`` naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from modelship_contract import image as image_contract

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
REQUEST_MEMORY_MIB = image_contract.REQUEST_MEMORY_MIB


class SettingsError(ValueError):
    """An environment variable holds an unusable value; the message names it."""


def _int(env: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{key}={raw!r} is not an integer (allowed: {low}..{high})") from None
    if not low <= value <= high:
        raise SettingsError(f"{key}={value} is out of range (allowed: {low}..{high})")
    return value


def _bool(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{key}={raw!r} is not a boolean (allowed: true, false, 1, 0, yes, no)")


@dataclasses.dataclass(frozen=True)
class Settings:
    model_dir: Path = Path(image_contract.MODEL_DIR)
    """Model directory (ONNX file + manifest.json)."""
    host: str = "0.0.0.0"
    port: int = image_contract.PORT
    workers: int = 1
    """uvicorn worker processes, forked after the model is loaded: they share its one copy."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Request bodies above this get 413."""
    log_level: str = "info"
    access_log: bool = True
    """One JSON line per request (method, path, status, duration, request id)."""
    intra_op_threads: int = 1
    """ONNX Runtime threads per worker: 1 keeps workers from fighting over the cores."""
    graceful_timeout: int = 20
    """Seconds to finish in-flight requests after SIGTERM."""
    request_memory_mib: int = REQUEST_MEMORY_MIB
    """What one inference may allocate in a worker (ONNX Runtime's capped arena); more gets 413."""
    trust_dir: Path | None = None
    """Public keys the model must be signed by (``MODELSHIP_TRUST_DIR``; the image sets /opt/trust).
    Unset: no signature check (a bare development run); the image always sets it."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        log_level = env.get("MODELSHIP_LOG_LEVEL", "info").strip().lower() or "info"
        if log_level not in LOG_LEVELS:
            raise SettingsError(f"MODELSHIP_LOG_LEVEL={log_level!r} is not one of: {', '.join(LOG_LEVELS)}")
        host = env.get("MODELSHIP_HOST", "0.0.0.0").strip() or "0.0.0.0"
        return cls(
            model_dir=Path(env.get(image_contract.MODEL_DIR_ENV) or image_contract.MODEL_DIR),
            host=host,
            port=_int(env, image_contract.PORT_ENV, image_contract.PORT, 1, 65535),
            workers=_int(env, "MODELSHIP_WORKERS", 1, 1, 64),
            max_body_bytes=_int(env, "MODELSHIP_MAX_BODY_BYTES", 4 * 1024 * 1024, 1024, 1024**3),
            log_level=log_level,
            access_log=_bool(env, "MODELSHIP_ACCESS_LOG", True),
            intra_op_threads=_int(env, "MODELSHIP_INTRA_OP_THREADS", 1, 1, 64),
            graceful_timeout=_int(env, "MODELSHIP_GRACEFUL_TIMEOUT", 20, 0, 3600),
            trust_dir=Path(trust) if (trust := env.get(image_contract.TRUST_DIR_ENV)) else None,
            request_memory_mib=_int(env, "MODELSHIP_REQUEST_MEMORY_MIB", REQUEST_MEMORY_MIB, 1, 1024 * 1024),
        )

    def to_env(self) -> dict[str, str]:
        """The same settings as environment variables, for worker processes."""
        return {
            image_contract.MODEL_DIR_ENV: str(self.model_dir),
            "MODELSHIP_HOST": self.host,
            image_contract.PORT_ENV: str(self.port),
            "MODELSHIP_WORKERS": str(self.workers),
            "MODELSHIP_MAX_BODY_BYTES": str(self.max_body_bytes),
            "MODELSHIP_LOG_LEVEL": self.log_level,
            "MODELSHIP_ACCESS_LOG": "true" if self.access_log else "false",
            "MODELSHIP_INTRA_OP_THREADS": str(self.intra_op_threads),
            "MODELSHIP_GRACEFUL_TIMEOUT": str(self.graceful_timeout),
            "MODELSHIP_REQUEST_MEMORY_MIB": str(self.request_memory_mib),
        }
