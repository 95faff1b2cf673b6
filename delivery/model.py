"""The model side of the local flow: the local model store (Azurite), the demo model and its golden
data set, the fetch into the build context, the trusted signing keys, and ``publish``.

The store itself is :mod:`modelstore`; this module only runs it locally and turns its errors into
:class:`~delivery.settings.DeliveryError` messages that say what was (not) touched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from delivery.settings import DeliveryError, LocalSettings, log

DEMO_VERSION = "1.0.0"


def ensure_azurite(settings: LocalSettings) -> str:
    """Start Azurite unless it runs; return its connection string (never printed: it holds the key)."""
    from delivery import azurite as emulator

    try:
        pid = emulator.daemon_start(settings.azurite_port, settings.azurite_dir)
    except emulator.EmulatorError as exc:
        raise DeliveryError(f"Azurite on 127.0.0.1:{settings.azurite_port}: {exc}") from exc
    log(f"Azurite at {emulator.blob_endpoint(settings.azurite_port)} (pid {pid})")
    return emulator.connection_string(settings.azurite_port)


def ensure_demo_model(store, name: str) -> None:
    """Train and publish the demo model if the store has no version of ``name``."""
    from modelstore.errors import ModelStoreError, NotFound

    try:
        latest = store.latest(name)
        log(f"model store has {name}; latest is {latest.version}")
        ensure_golden_set(store, store.resolve(f"{name}@{latest.version}")[0])
        return
    except NotFound:
        pass
    except ModelStoreError as exc:
        raise DeliveryError(f"cannot read the model store: {exc}") from exc
    from training.train_digits import train

    log(f"model store has no {name}: training and publishing the demo model {name}@{DEMO_VERSION}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / name
        train(out, name, DEMO_VERSION)
        try:
            ensure_golden_set(store, store.publish(out))
        except ModelStoreError as exc:
            raise DeliveryError(f"cannot publish the demo model {name}@{DEMO_VERSION}: {exc}") from exc


def ensure_golden_set(store, manifest) -> None:
    """Publish the demo's golden data set if ``manifest`` is judged on it and the store lacks it.

    The evaluation gate (``make models ARGS="evaluate ... --dataset digits-golden@1"``) needs it in
    the same store as the models; it is immutable, so it is published once and then only checked.
    Models judged on another data set are left alone: their team publishes it.
    """
    from modelstore.datasets import Datasets
    from modelstore.errors import AlreadyExists, NotFound
    from training.train_digits import GOLDEN_NAME, GOLDEN_VERSION, write_golden

    if manifest.evaluation is None or manifest.evaluation.dataset != GOLDEN_NAME:
        return
    ref = f"{GOLDEN_NAME}@{GOLDEN_VERSION}"
    datasets = Datasets(store)
    try:
        datasets.manifest(ref)
        return
    except NotFound:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        golden = write_golden(Path(tmp) / GOLDEN_NAME, GOLDEN_NAME, GOLDEN_VERSION)
        try:
            datasets.publish(Path(tmp) / GOLDEN_NAME)
        except AlreadyExists:  # published meanwhile by another `make publish`: the same rows
            return
    log(f"published the golden data set {golden.ref} ({golden.rows} rows, sha256 {golden.sha256[:12]}) "
        "for the evaluation gate")


LOCAL_CANARY = "canary:local"
"""Who a local canary's rollback move names (with the identity that wrote it)."""


def move_alias_back(store, name: str, alias: str, record: dict, reason: str) -> str:
    """After the local canary rolled ``record["canary"]`` back: move ``name@alias`` back to the
    version that kept serving (:meth:`modelstore.aliases.Aliases.roll_back`, the same code as
    ``modelship-models rollback`` in the pipelines). Returns what was done, in one line; never
    raises (the release has failed already, and the stable version serves either way)."""
    from modelstore.aliases import Aliases
    from modelstore.errors import ModelStoreError
    from modelstore.release_cli import describe_rollback

    stable, canary = record["stable"], record["canary"]
    last = record["steps"][-1] if record.get("steps") else {}
    evidence = {
        "kind": "canary", "engine": "local", "verdict": last.get("status", "fail"),
        "step_weight": last.get("weight"), "reason": record.get("reason"),
        "canary": {"version": canary["version"], "sha256": canary.get("sha256")},
        "stable": {"version": stable["version"], "sha256": stable.get("sha256")},
        "checks": last.get("checks"), "canary_figures": last.get("canary"),
        "stable_figures": last.get("stable"),
        "clients": record.get("clients"), "record": record.get("path"),
    }
    try:
        done = Aliases(store).roll_back(name, alias, canary["version"], stable["version"], reason,
                                        by=LOCAL_CANARY, evidence=evidence,
                                        serving_sha256=stable.get("sha256") or None)
    except ModelStoreError as exc:
        return (f"{name}@{alias} was NOT moved back ({exc}); it may still name the rejected "
                f"{canary['version']}: move it by hand (docs/release.md)")
    return describe_rollback(name, alias, canary["version"], done)


def fetch_model(store, ref: str, context: Path, cache_dir: Path):
    """Fetch ``NAME@VERSION`` (or ``NAME@latest``) into ``<context>/model``; the store leaves it
    untouched on failure."""
    from modelstore.errors import ModelStoreError

    name, version = ref.split("@", 1) if "@" in ref else (ref, "latest")
    what = f"the latest {name}" if version == "latest" else ref
    try:
        result = store.fetch(ref, context / "model", cache_dir=cache_dir)
    except ModelStoreError as exc:
        raise DeliveryError(
            f"cannot fetch {what} from the model store: {exc}. "
            "Nothing was built or pushed; the running container (if any) keeps serving. "
            f"To deploy another version: make up MODEL={name}@<version> "
            f"(published: {_published_versions(store, name)})"
        ) from exc
    m = result.manifest
    log(f"fetched {m.name}@{m.version} ({result.bytes_transferred} bytes transferred, "
        f"cache {'hit' if result.cache_hit else 'miss'}, signed by {result.signer})")
    return result


def _published_versions(store, name: str) -> str:
    """The store's versions of ``name``, newest last, for an error message (best effort)."""
    try:
        versions = [v.version for v in store.versions(name)]
    except Exception:  # the message it decorates is the error; this is only a hint
        return "unknown"
    return ", ".join(versions[-5:]) or "none"


def prepare_trust(context: Path) -> None:
    """Put the trusted public keys into ``<context>/trust``: the build verifies the model against them.

    With no key configured (``MODELSHIP_SIGNING_KEY`` unset) the local key is created on first use,
    outside the repository (:mod:`modelstore.signing`); only public keys enter the context.
    """
    from modelship_contract.signature import TRUST_SUBDIR
    from modelstore import signing
    from modelstore.errors import ModelStoreError

    try:
        if not os.environ.get(signing.SIGNING_KEY_ENV):
            signing.ensure_key()
        signing.export_trusted_keys(context / TRUST_SUBDIR)
    except ModelStoreError as exc:
        raise DeliveryError(f"model signing keys: {exc}") from exc


def publish(settings: LocalSettings, model_dir: Path | None, train_version: str | None) -> None:
    """Publish a model directory (or a freshly trained demo version) to the local model store."""
    from modelstore.errors import ModelStoreError
    from modelstore.store import ModelStore

    store = ModelStore.from_connection_string(ensure_azurite(settings), settings.store_container)
    prepare_trust(settings.context)  # creates the local signing key on first use
    with tempfile.TemporaryDirectory() as tmp:
        if train_version is not None:
            from training.train_digits import train

            model_dir = Path(tmp) / settings.model
            train(model_dir, settings.model, train_version)
        try:
            manifest = store.publish(model_dir)
            ensure_golden_set(store, manifest)
        except ModelStoreError as exc:
            raise DeliveryError(f"publish to the local model store failed: {exc}") from exc
    log(f"published {manifest.ref} to the local model store; `make up` deploys it")
