"""``make watch``: follow a model alias and run the local release whenever it moves.

A promotion (``modelship-models promote digits@1.2.0 --alias production ...``) is the only thing a
team does; this loop notices the alias record change in the store (Azurite locally; Event Grid does
the same job in the cloud, see :mod:`components.release_trigger`) and runs ``make up`` for the
version the alias names *at that move*, pinned (``--model digits@1.2.0``), so a release never
deploys a later move than the one that triggered it.

It converges rather than replays: at start, and after each move, it releases the alias's target
unless the running deployment already serves it. A move is released once; if its release fails
(say the canary rolled it back), the loop waits for the next move instead of retrying forever. A
move that carries neither a passing evaluation report nor a recorded ``--force`` was not written by
``promote`` and is refused, and so is a move to a version a canary rejected for this alias (unless
forced). A canary's rollback move (``kind: rollback``, written by the release that was rolled back)
names the version that kept serving: it is "already running" here, or released like a forced move.

    python -m delivery.watch [--model digits@production] [--interval 5] [--once]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelship_contract.manifest import is_alias_name

DEFAULT_REF = "digits@production"


def log(msg: str) -> None:
    print(f"[watch] {msg}", flush=True)


@dataclasses.dataclass
class Watcher:
    """Polls ``name@alias`` in ``store`` and calls ``release(name@version)`` when it moves."""

    store: Any
    name: str
    alias: str
    release: Callable[[str], bool]
    """Deploys ``name@version``; returns whether the release succeeded."""
    running_version: Callable[[], str | None]
    """The version the running deployment serves, or None."""
    state_file: Path
    """Remembers the last move acted on (``seq``), so a restart does not replay a failed release."""
    interval: float = 5.0

    def step(self) -> str | None:
        """Check the alias once; release if it moved. Returns what was done (for logs and tests)."""
        from modelstore.aliases import ROLLBACK, Aliases

        doc, _ = Aliases(self.store).read(self.name, self.alias)
        if doc is None:
            return None
        move = doc["current"]
        handled = self._handled()
        if handled.get("seq") == move["seq"] and handled.get("to") == move["to"]:
            return None
        ref = f"{self.name}@{move['to']}"
        report = move.get("report") or {}
        rejection = (doc.get("rejected") or {}).get(move["to"])
        rollback = move.get("kind") == ROLLBACK
        if rejection and not move.get("forced") and not rollback:
            self._remember(move, "refused")
            log(f"{self.name}@{self.alias} move {move['seq']} -> {move['to']}: its canary rejected it on "
                f"{rejection['when']} ({rejection['why']}); not released again without "
                "`modelship-models promote --force --reason`")
            return "refused"
        if report.get("verdict") != "pass" and not move.get("forced") and not rollback:
            self._remember(move, "refused")
            log(f"{self.name}@{self.alias} move {move['seq']} -> {move['to']} has no passing evaluation "
                "report and was not forced: not released (promote with modelship-models promote)")
            return "refused"
        if self.running_version() == move["to"]:
            self._remember(move, "already running")
            log(f"{self.name}@{self.alias} -> {move['to']}: already running")
            return "already running"
        log(f"{self.name}@{self.alias} moved to {move['to']} (move {move['seq']} by {move['who']}: "
            f"{move['why']}); releasing {ref}")
        ok = self.release(ref)
        self._remember(move, "released" if ok else "failed")
        log(f"release of {ref} {'done' if ok else 'FAILED: the running version keeps serving'}")
        return "released" if ok else "failed"

    def run(self, stop: threading.Event, once: bool = False) -> None:
        from modelstore.errors import ModelStoreError

        log(f"following {self.name}@{self.alias} every {self.interval:g} s (Ctrl-C stops)")
        while not stop.is_set():
            try:
                self.step()
            except ModelStoreError as exc:  # the store being away is not the end of the watch
                log(f"cannot read {self.name}@{self.alias}: {exc}")
            if once:
                return
            stop.wait(self.interval)

    def _handled(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _remember(self, move: dict[str, Any], outcome: str) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"seq": move["seq"], "to": move["to"], "outcome": outcome}) + "\n")
        os.replace(tmp, self.state_file)


def served_version(settings) -> str | None:
    """The model version the local deployment ``settings`` serves now, or None when nothing runs."""
    from delivery.rollout import live_image_id, read_record

    record = read_record(settings)
    return record.get("model_version") if record and live_image_id(settings) else None


def parse_alias_ref(ref: str) -> tuple[str, str]:
    name, _, alias = ref.partition("@")
    if not name or not is_alias_name(alias):
        raise ValueError(f"MODEL={ref!r} is not NAME@ALIAS (for example {DEFAULT_REF}): make watch follows "
                         "an alias; to deploy one version use make up MODEL=NAME@VERSION")
    return name, alias


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m delivery.watch", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=os.environ.get("MODEL") or DEFAULT_REF, metavar="NAME@ALIAS",
                        help=f"the alias to follow (default {DEFAULT_REF})")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between checks (default 5)")
    parser.add_argument("--once", action="store_true", help="check once, release if needed, and exit")
    args = parser.parse_args(argv)
    from delivery.model import ensure_azurite
    from delivery.settings import DeliveryError, LocalSettings
    from modelstore.store import ModelStore

    try:
        name, alias = parse_alias_ref(args.model)
        if not 0.5 <= args.interval <= 3600:
            raise ValueError(f"--interval must be from 0.5 to 3600 seconds, got {args.interval}")
        settings = LocalSettings.from_env(os.environ)
        store = ModelStore.from_connection_string(ensure_azurite(settings), settings.store_container,
                                                  progress=False)
    except (ValueError, DeliveryError) as exc:
        print(f"[watch] ERROR: {exc}", file=sys.stderr)
        return 2

    def release(ref: str) -> bool:
        # A separate process: the same `make up` a person runs, with its own lock, logs and exit code.
        # --from-alias: a canary rollback moves the alias back to the version that kept serving.
        return subprocess.run([sys.executable, "-m", "delivery.cli", "up", "--quiet-build",
                               "--model", ref, "--from-alias", alias], check=False).returncode == 0

    watcher = Watcher(store, name, alias, release, lambda: served_version(settings),
                      settings.state_dir / f"watch-{name}-{alias}.json", args.interval)
    stop = threading.Event()
    try:
        watcher.run(stop, once=args.once)
    except KeyboardInterrupt:
        log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
