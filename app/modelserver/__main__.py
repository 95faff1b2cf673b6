"""Start the server: ``python -m modelserver --model-dir DIR --host H --port P --workers N``.

Every flag falls back to its ``MODELSHIP_*`` variable (see ``settings``). The model directory is
verified (manifest, size, sha256, and its signature against ``MODELSHIP_TRUST_DIR``
when set, as in the image) and the model loaded before any socket opens: on a mismatch or a
model ONNX Runtime cannot load, the process exits with status 2 and says why.

One copy of the model per container, whatever the number of workers. With one worker the model is
served in this process. With more, this process loads the model once and then forks the workers
(pre-fork, like gunicorn's ``--preload``): they inherit the ONNX Runtime session copy-on-write, and
as nothing writes to the weights after load, the pages stay shared and the container holds the
model once (``benchmarks/README.md``, "Large models", has the figures). The parent only supervises:
if a worker dies unexpectedly (for instance killed by the kernel for lack of memory) it stops the
others and exits with that worker's status (137 for SIGKILL), so the container restarts and its
state tells why. Metrics from all workers are aggregated through a fresh directory under /tmp (the
only writable path in the image). SIGTERM drains in-flight requests for up to
``MODELSHIP_GRACEFUL_TIMEOUT`` seconds, then exits 0; a single-worker server re-raises the signal
after draining (uvicorn), which as PID 1 in a container is ignored (still 0) and elsewhere gives
the status -SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from modelship_contract import image as image_contract

from .settings import Settings, SettingsError

log = logging.getLogger("modelserver")


def parse_args(argv: list[str] | None, defaults: Settings) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m modelserver", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=defaults.model_dir,
        help=f"model directory (env {image_contract.MODEL_DIR_ENV}, default {image_contract.MODEL_DIR})",
    )
    parser.add_argument("--host", default=defaults.host, help="env MODELSHIP_HOST, default 0.0.0.0")
    parser.add_argument("--port", type=int, default=defaults.port,
                        help=f"env {image_contract.PORT_ENV}, default {image_contract.PORT}")
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

    from modelship_contract.manifest import ManifestError

    from . import logs

    logs.configure(settings.log_level)
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
    from modelship_contract.signature import SignatureError

    from .predictor import Predictor

    # Verified (signature, size, sha256: one read of the model's bytes) and loaded once, here, before
    # any socket opens or any worker exists.
    predictor = Predictor.from_settings(settings)
    try:
        manifest = predictor.load()
    except SignatureError as exc:
        log.error("refusing to start: the model's signature failed verification",
                  extra={"error": str(exc), "check": exc.check.value})
        print(f"modelserver: refusing to start: {exc}", file=sys.stderr)
        return 2
    except (ManifestError, OSError) as exc:
        log.error("refusing to start: the model failed verification or does not load",
                  extra={"error": str(exc)})
        print(f"modelserver: refusing to start: {exc}", file=sys.stderr)
        return 2
    signer = predictor.signer.short if predictor.signer else "unchecked (MODELSHIP_TRUST_DIR unset)"
    log.info("model verified and loaded", extra={
        "model": manifest.ref, "sha256": manifest.sha256, "signer": signer, "workers": settings.workers,
        "load_seconds": round(predictor.load_seconds or 0, 3),
    })
    if settings.workers > 1:
        # Before prometheus_client is imported (by .http): it picks multi-process mode at import.
        metrics_dir = tempfile.mkdtemp(prefix="modelship-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from .http import create_app

    if settings.workers == 1:
        uvicorn.run(create_app(settings, predictor), **common)
        return 0
    try:
        return serve_forked(settings, predictor, common)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def serve_forked(settings: Settings, predictor, common: dict) -> int:
    """Fork ``settings.workers`` uvicorn servers sharing one listening socket and one loaded model.

    Fork is safe here: the session was created with one intra-op and one inter-op thread, so ONNX
    Runtime started no thread of its own, and no event loop exists yet in this process.
    """
    import signal
    import socket

    import uvicorn

    from .http import create_app

    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(2048)  # uvicorn's default backlog
    sock.set_inheritable(True)

    def spawn() -> int:
        pid = os.fork()
        if pid:
            return pid
        status = 1
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)  # uvicorn installs its own while serving
            uvicorn.Server(uvicorn.Config(create_app(settings, predictor), **common)).run(sockets=[sock])
            status = 0
        except BaseException:  # the child must never return into the parent's code
            log.exception("worker failed")
        finally:
            os._exit(status)

    children = {spawn() for _ in range(settings.workers)}
    stopping = False

    def stop(signum: int, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("workers started", extra={"workers": settings.workers, "pids": sorted(children)})
    status = 0
    while children:
        pid, wait_status = os.wait()
        children.discard(pid)
        if stopping:
            continue
        # A worker that dies while nobody asked it to: stop the rest and report it as our own status.
        if os.WIFSIGNALED(wait_status):
            signum = os.WTERMSIG(wait_status)
            status = 128 + signum
            why = f"killed by {signal.Signals(signum).name}"
            if signum == signal.SIGKILL:
                why += " (the kernel's out-of-memory killer does this when the memory limit is reached)"
        else:
            status = os.WEXITSTATUS(wait_status) or 1
            why = f"exited with status {os.WEXITSTATUS(wait_status)}"
        log.error("a worker died; stopping the server", extra={"pid": pid, "reason": why})
        print(f"modelserver: worker {pid} {why}; stopping", file=sys.stderr, flush=True)
        stop(signal.SIGTERM, None)
    sock.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
