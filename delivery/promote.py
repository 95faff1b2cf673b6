"""The local ``prod`` stage: run the exact image the dev stage verified, by digest, with no rebuild.

``make promote`` (``python -m delivery.promote``) is the local stand-in for the prod stack. It takes
the digest from the dev stage's deployment record, and only if the dev stage still runs that image
(so it passed the container test before its push and its smoke test before its switch) and the
registry holds its SBOM, linked to that digest. It then runs that same ``repo@sha256:...`` behind
a second front door (``MODELSHIP_PROD_PORT``, default the dev port + 1) through the same release
machinery as dev (``delivery.rollout.deploy``: smoke test before the switch, the running prod
container untouched on any failure). Nothing is built, fetched or pushed. ``make status`` then
shows both stages and whether they run one digest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from types import SimpleNamespace

from delivery import engine
from delivery.build import ensure_registry
from delivery.cli import status
from delivery.rollout import deploy, ensure_frontdoor, frontdoor, live_image_id, read_record
from delivery.settings import DeliveryError, LocalSettings, log

PROD_SUFFIX = "-prod"


def prod_settings(dev: LocalSettings, env: dict[str, str] | None = None) -> LocalSettings:
    """The prod stage: same registry, store and limits as dev; its own containers, record and front door."""
    env = os.environ if env is None else env
    raw = env.get("MODELSHIP_PROD_PORT", str(dev.port + 1))
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"MODELSHIP_PROD_PORT must be a port number, got {raw!r}") from None
    if port == dev.port:
        raise ValueError(f"MODELSHIP_PROD_PORT {port} must differ from the dev stage's MODELSHIP_PORT")
    return dataclasses.replace(dev, instance=f"{dev.instance}{PROD_SUFFIX}", port=port)


def verified_dev_image(dev: LocalSettings) -> dict:
    """The dev stage's record, if dev runs what it recorded: the only digest prod may take."""
    record = read_record(dev)
    if not record:
        raise DeliveryError(f"the dev stage ({dev.instance}) has no deployment: run `make up` first")
    if live_image_id(dev) != record.get("image_id"):
        raise DeliveryError(
            f"the dev stage does not run {record.get('image')} (its container is gone or runs another "
            "image): only an image dev tested and runs can be promoted; run `make up` first"
        )
    from delivery import sbom

    registry = f"127.0.0.1:{dev.registry_port}"
    try:
        sbom_digest, _ = sbom.pull(registry, dev.repository, record["digest"])
    except sbom.SbomError as exc:
        raise DeliveryError(f"refusing to promote {record['image']}: {exc}") from exc
    if not record.get("sbom", "").endswith(sbom_digest):
        raise DeliveryError(f"refusing to promote {record['image']}: its SBOM in the registry is "
                            f"{sbom_digest}, the dev record says {record.get('sbom')}")
    return record


def _manifest_of(image: str):
    """The model manifest baked into ``image`` (read from the image, not from the build context)."""
    from modelship_contract import image as image_contract
    from modelship_contract.manifest import MANIFEST_FILE, ModelManifest

    out = engine.docker("run", "--rm", "--network", "none", "--entrypoint", "cat", image,
                        f"{image_contract.MODEL_DIR}/{MANIFEST_FILE}", timeout=120).stdout
    return ModelManifest.from_dict(json.loads(out))


def promote(dev: LocalSettings, prod: LocalSettings | None = None) -> dict:
    """Run dev's verified digest as the prod stage; return the prod record (also written to its state)."""
    prod = prod or prod_settings(dev)
    record = verified_dev_image(dev)
    pinned = record["image"]
    if "@sha256:" not in pinned:
        raise DeliveryError(f"refusing to promote {pinned!r}: not pinned by digest")
    ensure_registry(dev)
    ensure_frontdoor(prod)
    current = read_record(prod)
    if current and current.get("digest") == record["digest"] and live_image_id(prod) == record["image_id"]:
        log(f"prod already runs {pinned}")
        return current
    manifest = _manifest_of(pinned)
    prod = prod.sized_for(manifest)  # the same memory limit and start-up budget as dev derives
    log(f"promoting {pinned} (model {manifest.ref}, signed by {record.get('model_signer')}) "
        f"from {dev.instance} to {prod.instance}: no build, no push")
    deploy(prod, pinned, SimpleNamespace(manifest=manifest))  # deploy reads only .manifest
    if live_image_id(prod) != record["image_id"]:
        raise DeliveryError(f"prod runs {live_image_id(prod)}, not {record['image_id']}")
    backend = engine.published_port(prod.container, prod.run_options.container_port)
    promoted = {**record, "stage": "prod", "promoted_from": dev.instance, "container": prod.container,
                "endpoint": f"http://127.0.0.1:{prod.port}", "backend": f"127.0.0.1:{backend}"}
    promoted.pop("model_bytes_transferred", None)
    prod.record_file.write_text(json.dumps(promoted, indent=2) + "\n")
    log(f"prod endpoint: {promoted['endpoint']} runs {record['digest']}, the digest dev verified")
    return promoted


def down_prod(dev: LocalSettings) -> None:
    """Stop the prod stage: its containers and front door (``make down`` runs this first)."""
    prod = prod_settings(dev)
    for name in engine.remove_containers_with_label(prod.label):
        log(f"removed container {name}")
    if frontdoor(prod).stop():
        log("stopped the prod front door")
    prod.record_file.unlink(missing_ok=True)


def stages_status(dev: LocalSettings) -> int:
    """``make status``: the dev stage, then the prod stage if one was promoted, and whether they agree."""
    rc = status(dev)
    prod = prod_settings(dev)
    prod_record = read_record(prod)
    if prod_record is None:
        return rc
    print(f"prod stage ({prod.instance}):")
    prod_rc = status(prod)
    dev_record = read_record(dev) or {}
    if dev_record.get("digest") == prod_record.get("digest"):
        print(f"dev and prod run one digest: {prod_record['digest']}")
    else:
        print(f"dev runs {dev_record.get('digest')}, prod runs {prod_record.get('digest')} "
              "(`make promote` takes dev's to prod)")
    return rc or prod_rc


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m delivery.promote", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["promote", "status", "down"], nargs="?", default="promote")
    args = parser.parse_args(argv)
    try:
        dev = LocalSettings.from_env()
        if args.command == "status":
            return stages_status(dev)
        if args.command == "down":
            down_prod(dev)
            return 0
        promote(dev)
    except (DeliveryError, engine.DockerError, ValueError) as exc:
        print(f"[local] ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

