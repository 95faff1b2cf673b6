"""Local delivery: the seed's build flow end to end on this machine, with real parts.

``python -m delivery.cli up`` (``make up``) runs the same steps as the cloud flow, with Azurite
standing in for Blob Storage, a loopback ``docker-registry`` for ACR and the local Docker Engine for
both BuildKit and the Kubernetes Deployment:

1. start what is not running (registry, front door, Azurite); dockerd is the bootstrap's job;
2. publish the demo model to the model store if the store has none;
3. fetch the latest model into the build context (``app/model``) through the model store's cache;
4. build with the stack's build spec (same Dockerfile, context, build args and tag as ModelImage);
5. check the built image before pushing it: run it with the Deployment's settings on a free port
   and smoke-test it (ready, one known answer, the reported model version);
6. push to the registry and run the image by digest next to the previous container, on its own
   ephemeral loopback port; once it passes the same smoke test, the front door on
   127.0.0.1:<port> (the LoadBalancer's stand-in, :mod:`delivery.frontdoor`) sends new
   connections to it and the previous container is stopped: no moment without an answer.

``down`` stops everything ``up`` started, ``status`` shows the deployment, ``publish`` adds a model
to the local store. Every step that fails raises :class:`~delivery.settings.DeliveryError` whose
message says what failed; nothing before the switch touches the running container. Exit codes:
0 done (``status``: running), 1 a step failed or a setting is not allowed (``status``: not
running), 2 bad arguments.

The steps live by job: :mod:`delivery.settings`, :mod:`delivery.model` (store, fetch, publish),
:mod:`delivery.build` (wheelhouse, base image, build, candidate check, push, SBOM) and
:mod:`delivery.rollout` (deploy, repair, retire); this module runs them in order and reports.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from components import sizing
from delivery import canary, engine, hygiene
from delivery.build import (
    build_image,
    check_candidate,
    choose_base_image,
    ensure_registry,
    ensure_wheelhouse,
    push_image,
    push_sbom,
)
from delivery.model import (
    ensure_azurite,
    ensure_demo_model,
    fetch_model,
    move_alias_back,
    prepare_trust,
    publish,
)
from delivery.prometheus import LocalPrometheus
from delivery.rollout import (
    CanaryRolledBack,
    deploy,
    ensure_frontdoor,
    frontdoor,
    live_image_id,
    read_record,
    repair,
)
from delivery.services import LocalRegistry, ServiceError, stop_pid
from delivery.settings import DeliveryError, LocalSettings, log


def up(settings: LocalSettings, echo: bool = True, store=None) -> dict:
    """Run the whole flow under a lock on the state directory (one ``up`` at a time per deployment)."""
    import fcntl

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.state_dir / f"up-{settings.instance}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DeliveryError(
                f"another `up` of {settings.instance} is running (lock {lock.name}); wait for it"
            ) from None
        return _up(settings, echo, store)


def _up(settings: LocalSettings, echo: bool, store) -> dict:
    """Run the whole flow; return the deployment record (also written to the state dir).

    ``store`` replaces the model store on the local Azurite (tests pass one on their own emulator).
    """
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()

    def step(label: str) -> None:
        # One line per step; the running time tells how long each one took.
        log(f"{label}  (t+{time.monotonic() - began:.1f} s)")

    if not engine.engine_available():
        raise DeliveryError("no Docker Engine answers: run scripts/bootstrap.sh (make up does)")
    step("1/6 services")
    registry = ensure_registry(settings)
    repair(settings, ensure_frontdoor(settings))
    if store is None:
        from modelstore.store import ModelStore

        store = ModelStore.from_connection_string(ensure_azurite(settings), settings.store_container)
    step("2/6 model store")
    prepare_trust(settings.context)
    ensure_demo_model(store, settings.model)
    step(f"3/6 fetch {settings.model_ref}")
    fetched = fetch_model(store, settings.model_ref, settings.context, settings.state_dir / "model-cache")
    settings = settings.sized_for(fetched.manifest)
    log(f"model {fetched.manifest.ref} is {sizing.human(fetched.manifest.size)}: memory limit "
        f"{settings.memory}, start-up budget {settings.startup_seconds} s")
    step("4/6 build")
    ensure_wheelhouse(settings.context)
    base = choose_base_image(settings)
    spec, iid, ref = build_image(settings, base, registry, echo=echo)
    record = read_record(settings)
    if (record and record.get("image_id") == iid and live_image_id(settings) == iid):
        log(f"unchanged: {record['image']} is already running on {record['endpoint']}")
        return record
    step("5/6 test before push")
    check_candidate(settings, iid, spec)
    step("6/6 push and run by digest")
    repo = f"{registry.host}/{settings.repository}"
    digest = push_image(registry, settings.repository, ref)
    pinned = f"{repo}@{digest}"
    sbom_digest, sbom_components = push_sbom(settings, registry, pinned, digest, base)
    try:
        deploy(settings, pinned, spec)
    except CanaryRolledBack as exc:
        if settings.alias is None:
            raise DeliveryError(f"{exc}\nno alias released {spec.manifest.ref} (MODEL named a version): "
                                "no alias was moved") from exc
        started = time.monotonic()
        moved = move_alias_back(store, spec.manifest.name, settings.alias, exc.record, exc.reason)
        log(f"{moved} ({time.monotonic() - started:.2f} s)")
        raise DeliveryError(f"{exc}\n{moved}") from exc
    record = {
        "image": pinned, "tag": ref, "image_id": iid, "digest": digest,
        "model": spec.manifest.name, "model_version": spec.manifest.version,
        "model_signer": fetched.signer,
        "sbom": f"{repo}@{sbom_digest}", "sbom_components": sbom_components,
        "model_bytes_transferred": fetched.bytes_transferred,
        "memory": settings.memory, "startup_seconds": settings.startup_seconds,
        "revision": spec.revision, "base_image": base, "container": settings.container,
        "endpoint": f"http://127.0.0.1:{settings.port}",
    }
    backend_port = engine.published_port(settings.container, settings.run_options.container_port)
    record["backend"] = f"127.0.0.1:{backend_port}"
    settings.record_file.write_text(json.dumps(record, indent=2) + "\n")
    log(f"running {pinned}")
    took = time.monotonic() - began
    log(f"endpoint: {record['endpoint']}  (model {spec.manifest.ref}, signed by {fetched.signer}; "
        f"SBOM {sbom_digest[:19]}; done in {took:.1f} s)")
    hygiene.prune_images(settings.repository, settings.keep, {iid}, log)
    hygiene.prune_cache(settings.state_dir / "model-cache", settings.keep, log)
    return record


def down(settings: LocalSettings, purge: bool = False, build_cache: bool = False) -> None:
    """Stop everything ``up`` started: containers, front door, registry, Azurite, and dockerd if
    bootstrap started it; empty ``app/model``. ``purge``: also remove the stored data
    (:mod:`delivery.hygiene`)."""
    for name in engine.remove_containers_with_label(settings.label):
        log(f"removed container {name}")
    if frontdoor(settings).stop():
        log("stopped the front door")
    if LocalRegistry(settings.state_dir, settings.registry_port).stop():
        log("stopped the registry")
    if LocalPrometheus(settings.state_dir, canary.CanarySettings.from_env().prometheus_port).stop():
        log("stopped Prometheus")
    from delivery import azurite as emulator

    pid = emulator.daemon_stop(settings.azurite_dir)
    if pid:
        log(f"stopped Azurite (pid {pid})")
    settings.record_file.unlink(missing_ok=True)
    hygiene.clear_model_dir(settings.context, log)
    if purge:
        hygiene.purge(settings.state_dir, settings.azurite_dir, settings.repository, build_cache, log)
    if stop_pid(settings.state_dir / "run" / "dockerd.pid", "dockerd", timeout=30):
        log("stopped dockerd (started by bootstrap)")



def status(settings: LocalSettings) -> int:
    """Print the deployment when its container runs and the front door forwards to it."""
    record = read_record(settings)
    live = live_image_id(settings) if engine.engine_available() else None
    door = frontdoor(settings)
    backend = door.backend()
    state = engine.container_state(settings.container) if live else None
    if record and live == record.get("image_id") and door.running_pid() and state and backend \
            and backend.get("container_id") == state["Id"]:
        print(json.dumps({**record, "backend": f"127.0.0.1:{backend['port']}",
                          "frontdoor_pid": door.running_pid()}, indent=2))
        return 0
    print("not running")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m delivery.cli", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "publish"])
    parser.add_argument("--verbose", action="store_true",
                        help="up: print the build's full output (always kept in .local/logs/build.log)")
    parser.add_argument("--quiet-build", action="store_true", help=argparse.SUPPRESS)  # the default now
    parser.add_argument("--purge", action="store_true",
                        help="down: also remove images, registry and Azurite data and the model cache")
    parser.add_argument("--build-cache", action="store_true", help="down --purge: prune the build cache too")
    parser.add_argument("--model", metavar="NAME[@VERSION]",
                        help="up: the model version to deploy (default: MODELSHIP_MODEL, else digits@latest)")
    parser.add_argument("--from-alias", metavar="ALIAS",
                        help="up: the alias whose move released --model (make watch passes it); if the "
                             "canary rolls the release back, the alias moves back to the serving version")
    parser.add_argument("--model-dir", type=Path, help="publish: the model directory to publish")
    parser.add_argument("--train", metavar="VERSION", help="publish: train the demo model as VERSION")
    args = parser.parse_args(argv)
    try:
        env = dict(os.environ)
        if args.model:
            env["MODELSHIP_MODEL"] = args.model
        settings = LocalSettings.from_env(env)
        if args.from_alias:
            settings = dataclasses.replace(settings, release_alias=args.from_alias)
        canary.CanarySettings.from_env(env)  # a bad canary setting fails before anything starts
        if args.command == "up":
            up(settings, echo=args.verbose and not args.quiet_build)
        elif args.command == "down":
            down(settings, purge=args.purge, build_cache=args.build_cache)
        elif args.command == "publish":
            if (args.model_dir is None) == (args.train is None):
                parser.error("publish needs exactly one of --model-dir DIR or --train VERSION")
            publish(settings, args.model_dir, args.train)
        else:
            return status(settings)
    except (DeliveryError, engine.DockerError, ServiceError, ValueError) as exc:
        print(f"[local] ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
