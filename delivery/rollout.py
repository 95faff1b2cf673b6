"""Roll out a pushed image: run it by digest behind the front door with no moment of downtime,
repair an interrupted release, retire the previous container.

The front door (:mod:`delivery.frontdoor`, HAProxy) stands in for the LoadBalancer; a version
already serving is replaced through the canary (:mod:`delivery.canary`). The deployment record
(:func:`read_record`) says what runs.
"""

from __future__ import annotations

import contextlib
import json
import time

from components.build_spec import BuildSpec
from delivery import budget, canary, engine
from delivery.frontdoor import FrontDoor
from delivery.services import ServiceError
from delivery.settings import DeliveryError, LocalSettings, log


class CanaryRolledBack(DeliveryError):
    """The canary rejected the new version; the old one never stopped serving. ``record``: the
    canary's record (:func:`delivery.canary.release`), ``reason``: its one-line verdict."""

    def __init__(self, message: str, record: dict, reason: str):
        super().__init__(message)
        self.record = record
        self.reason = reason


STOP_TIMEOUT = 30
"""Seconds ``docker stop`` waits before SIGKILL; above the server's 20 s graceful timeout."""


def wait_and_smoke(url: str, model: str, version: str, timeout: float = 90.0, gone=None) -> None:
    from delivery.smoke import run_smoke

    result = run_smoke(url, model=model, expect_version=version, timeout=timeout, interval=0.5,
                       log=lambda line: log(f"smoke: {line}"), gone=gone)
    log(f"smoke passed on {url}: ready after {result.ready_after_s:.1f} s, label {result.label}, "
        f"{model}@{result.version}")


def read_record(settings: LocalSettings) -> dict | None:
    try:
        return json.loads(settings.record_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def live_image_id(settings: LocalSettings) -> str | None:
    state = engine.container_state(settings.container)
    if not state or not state["State"].get("Running"):
        return None
    return state["Image"]


def frontdoor(settings: LocalSettings) -> FrontDoor:
    return FrontDoor(settings.frontdoor_dir, settings.port)


def ensure_frontdoor(settings: LocalSettings) -> FrontDoor:
    door = frontdoor(settings)
    try:
        door.ensure()
    except ServiceError as exc:
        raise DeliveryError(f"front door: {exc}") from exc
    return door


def retire(name: str) -> None:
    """Stop a container that no longer gets new connections (SIGTERM: in-flight requests finish)."""
    engine.docker("stop", "-t", str(STOP_TIMEOUT), name, check=False, timeout=STOP_TIMEOUT + 30)
    engine.remove_container(name)


def repair(settings: LocalSettings, door: FrontDoor) -> None:
    """Bring an interrupted release (or a restarted engine) back to one live container behind the door.

    The container the front door points at is the one that serves: it keeps (or takes) the live
    name and the others are retired. Without a usable backend record the live container (or, from
    an older interrupted swap, the previous one) is started if needed and the door pointed at it.
    """
    live, previous, nxt = settings.container, f"{settings.container}-previous", f"{settings.container}-next"
    states = {name: engine.container_state(name) for name in (live, previous, nxt)}
    backend = door.backend()
    wanted = (backend or {}).get("container_id")
    serving = next((name for name, st in states.items()
                    if st and wanted and st["Id"] == wanted and st["State"].get("Running")), None)
    if serving is None:
        serving = live if states[live] else previous if states[previous] else None
        if serving is None:  # nothing deployed yet (a -next left by an interrupted first release)
            engine.remove_container(nxt)
            return
        if not states[serving]["State"].get("Running"):
            engine.docker("start", serving)
            log(f"started {serving}, left stopped by an interrupted release")
    for name, st in states.items():
        if st is not None and name != serving:
            retire(name)
            log(f"retired {name}, left behind by an interrupted release")
    if serving != live:
        engine.docker("rename", serving, live)
    port = engine.published_port(live, settings.run_options.container_port)
    live_id = engine.container_state(live)["Id"]
    if port == settings.port:
        raise DeliveryError(
            f"{live} publishes 127.0.0.1:{settings.port} itself (started by an older `make up`); "
            "run `make down` once, then `make up`"
        )
    if backend != {"port": port, "container_id": live_id}:
        door.switch(port, live_id)
        log(f"front door now forwards to {live} on 127.0.0.1:{port}")


def deploy(settings: LocalSettings, pinned: str, spec: BuildSpec) -> None:
    """Run ``pinned`` (``repo@sha256:...``) behind the front door without a moment of downtime.

    Like a rolling update with ``maxUnavailable: 0``: the new container starts next to the old
    one, on its own ephemeral loopback port, and is smoke-tested there. Only once HAProxy's health
    check passes too does the front door send requests to it, and drain the old one (no new
    requests; those in flight finish); the old container is stopped after that. On any failure
    before the switch the new container is removed and the old one, which never stopped, keeps
    serving.
    """
    door = frontdoor(settings)
    repair(settings, door)
    live, previous, nxt = settings.container, f"{settings.container}-previous", f"{settings.container}-next"
    labels = {"modelship.instance": settings.instance, "modelship.role": "live"}
    try:
        engine.create_container(pinned, nxt, 0, settings.run_options, labels)
    except engine.DockerError as exc:
        engine.remove_container(nxt)
        raise DeliveryError(
            f"cannot create a container from {pinned}: {exc}. The running container was not touched."
        ) from exc
    url, port = f"container {nxt}", 0
    try:
        engine.docker("start", nxt)
        port = engine.published_port(nxt, settings.run_options.container_port)
        url = f"http://127.0.0.1:{port}"
        wait_and_smoke(url, spec.manifest.name, spec.manifest.version, settings.ready_timeout,
                       budget.stopped(nxt, spec.manifest, settings.memory_limit))
        # In the front door with weight 0 until HAProxy's own health check passes: no traffic yet.
        door.add(port, engine.container_state(nxt)["Id"])
        # With a version already serving: canary in steps, analysed in Prometheus (delivery/canary.py).
        canary.release(settings, door, live, nxt, port, spec.manifest.name, spec.manifest.version)
    except BaseException as exc:
        # BaseException too: an interrupt (Ctrl-C) must not leave a half-started container behind.
        logs = engine.logs_tail(nxt)
        if port:
            with contextlib.suppress(ServiceError):
                door.remove(port, timeout=5)
        engine.remove_container(nxt)
        if not isinstance(exc, Exception):
            raise
        if isinstance(exc, canary.CanaryFailed):
            raise CanaryRolledBack(f"the new container failed on {url}: {exc}. The running container was "
                                   "not touched.", exc.record, str(exc)) from exc
        raise DeliveryError(f"the new container failed on {url}: {exc}. The running container was "
                            f"not touched.\ncontainer log:\n{logs}") from exc
    door.switch(port, engine.container_state(nxt)["Id"])
    # From here on the new container serves; an interruption is finished by repair() next time.
    had_old = engine.container_state(live) is not None
    if had_old:
        # switch() drained it: no request is in progress there, and none will come.
        engine.docker("rename", live, previous)
    engine.docker("rename", nxt, live)
    log(f"front door {door.endpoint} now sends every request to {live} (127.0.0.1:{port})")
    if had_old:
        started = time.monotonic()
        retire(previous)
        log(f"stopped the previous container after {time.monotonic() - started:.1f} s (drained)")
