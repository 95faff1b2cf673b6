"""Start the server: ``python -m modelserver --model-dir DIR --host H --port P --workers N``.

Every flag falls back to its ``MODELSHIP_*`` variable (see ``settings``). The model directory is
verified (manifest, size, sha256) before any socket opens: on a mismatch the process exits with
status 2 and says why. With one worker the verified model is served in this process; with more,
uvicorn spawns workers that each open their own ONNX Runtime session and share metrics through a
fresh directory under /tmp (the only writable path in the image). SIGTERM drains in-flight
requests for up to ``MODELSHIP_GRACEFUL_TIMEOUT`` seconds, then exits 0; a single-worker server
re-raises the signal after draining (uvicorn), which as PID 1 in a container is ignored (still 0)
and elsewhere gives the status -SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .settings import Settings, SettingsError

log = logging.getLogger("modelserver")


def parse_args(argv: list[str] | None, defaults: Settings) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m modelserver", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=defaults.model_dir,
        help="model directory (env MODELSHIP_MODEL_DIR, default /opt/model)",
    )
    parser.add_argument("--host", default=defaults.host, help="env MODELSHIP_HOST, default 0.0.0.0")
    parser.add_argument("--port", type=int, default=defaults.port, help="env MODELSHIP_PORT, default 8080")
    parser.add_argument(
        "--workers",
        type=int,
        default=defaults.workers,
        help="uvicorn worker processes (env MODELSHIP_WORKERS, default 1)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port {args.port} is out of range (allowed: 1..65535)")
    if not 1 <= args.workers <= 64:
        parser.error(f"--workers {args.workers} is out of range (allowed: 1..64)")
    return Settings(
        **{
            **defaults.__dict__,
            "model_dir": args.model_dir,
            "host": args.host,
            "port": args.port,
            "workers": args.workers,
        }
    )


def main(argv: list[str] | None = None) -> int:
    try:
        defaults = Settings.from_env()
    except SettingsError as exc:
        print(f"modelserver: {exc}", file=sys.stderr)
        return 2
    settings = parse_args(argv, defaults)

    from . import logs
    from .manifest import ManifestError, load_model_dir

    logs.configure(settings.log_level)
    try:
        manifest = load_model_dir(settings.model_dir)
    except (ManifestError, OSError) as exc:
        log.error("refusing to start: the model directory failed verification", extra={"error": str(exc)})
        print(f"modelserver: refusing to start: {exc}", file=sys.stderr)
        return 2
    log.info(
        "model verified",
        extra={"model": manifest.ref, "sha256": manifest.sha256, "workers": settings.workers},
    )

    import uvicorn

    common = {
        "host": settings.host,
        "port": settings.port,
        "log_config": logs.UVICORN_LOG_CONFIG,
        "log_level": settings.log_level,
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": settings.graceful_timeout,
    }
    if settings.workers == 1:
        from .http import create_app
        from .predictor import Predictor

        predictor = Predictor(settings.model_dir, settings.intra_op_threads)
        try:
            predictor.load()
        except ManifestError as exc:
            log.error("refusing to start: the model does not load", extra={"error": str(exc)})
            print(f"modelserver: refusing to start: {exc}", file=sys.stderr)
            return 2
        uvicorn.run(create_app(settings, predictor), **common)
        return 0

    # Workers read their settings from the environment and write metrics under /tmp.
    os.environ.update(settings.to_env())
    metrics_dir = tempfile.mkdtemp(prefix="modelship-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run("modelserver.http:app_from_env", factory=True, workers=settings.workers, **common)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
