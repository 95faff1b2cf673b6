"""The release sub-commands of ``modelship-models``: evaluate, dataset, promote, aliases, history.

They live here, not in :mod:`modelstore.cli`, so the publish/fetch CLI stays one job; ``cli`` adds
them to its parser with :func:`add_commands` and dispatches through :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelstore.aliases import Aliases, check_chain, validate_alias
from modelstore.datasets import Datasets
from modelstore.errors import GateRefused, InvalidInput
from modelstore.reports import promotion_gate
from modelstore.store import DEFAULT_CACHE_DIR, ModelStore, parse_ref


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("promote", parents=[common],
                       help="move an alias (e.g. production) to a version that passed the evaluation gate")
    p.add_argument("ref", metavar="NAME@VERSION")
    p.add_argument("--alias", required=True, help="alias to move, e.g. production")
    p.add_argument("--reason", required=True, help="why (recorded in the alias history)")
    p.add_argument("--force", action="store_true",
                   help="move without a passing evaluation report (recorded as forced)")
    p.add_argument("--json", action="store_true", help="print the recorded move as JSON")

    p = sub.add_parser("evaluate", parents=[common],
                       help="score a candidate and the alias's current model on a golden data set; "
                            "store the report (exit 7 if the candidate fails the bar)")
    p.add_argument("ref", metavar="NAME@VERSION")
    p.add_argument("--dataset", required=True, metavar="DATASET@VERSION", help="e.g. digits-golden@1")
    p.add_argument("--against", metavar="ALIAS|VERSION",
                   help="the model to beat, e.g. production (omit for a new alias: the candidate alone)")
    p.add_argument("--cache-dir", type=Path, metavar="DIR",
                   help=f"model cache (env MODELSHIP_CACHE_DIR, default {DEFAULT_CACHE_DIR})")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = sub.add_parser("dataset", parents=[common], help="publish, list and show golden data sets")
    p.add_argument("action", choices=("publish", "list", "show"))
    p.add_argument("target", nargs="?", metavar="DIR|NAME@VERSION",
                   help="publish: a data set directory (dataset.json + rows.json); show: NAME@VERSION")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("aliases", parents=[common], help="list a model's aliases and where they point")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("history", parents=[common],
                       help="every publish of a model, or every move of one alias (--alias)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--alias", help="show the moves of this alias instead of the publishes")
    p.add_argument("--json", action="store_true", help="print JSON")


def _promote(store: ModelStore, args: argparse.Namespace) -> int:
    name, _ = parse_ref(args.ref)
    if "@" not in args.ref:
        raise InvalidInput(f"promote needs NAME@VERSION (or NAME@ALIAS), got {args.ref!r}")
    validate_alias(args.alias)
    candidate, _ = store.resolve(args.ref)
    gate = promotion_gate(store, candidate, args.alias, force=args.force)
    move = Aliases(store).move(name, args.alias, candidate.version, args.reason, gate=gate, forced=args.force)
    if args.json:
        _print_json(move)
    else:
        how = "FORCED, no passing report" if move["forced"] and not move["report"] else \
            f"report {move['report']['blob']}" if move["report"] else "no report"
        print(f"{name}@{args.alias}: {move['from'] or '(new)'} -> {move['to']} "
              f"(move {move['seq']}, by {move['who']}; {how})")
    return 0


def _evaluate(store: ModelStore, args: argparse.Namespace) -> int:
    from modelstore.evaluate import evaluate

    cache_dir = args.cache_dir or Path(os.environ.get("MODELSHIP_CACHE_DIR") or DEFAULT_CACHE_DIR)
    result = evaluate(store, args.ref, args.dataset, against=args.against, cache_dir=cache_dir)
    report = result.report
    if args.json:
        _print_json({"report": report, "stored": result.stored})
    else:
        print(f"{report['verdict'].upper()}: {report['candidate']['ref']} on {report['dataset']['ref']} "
              f"({report['dataset']['rows']} rows): {report['reason']}")
        print(f"report: {result.stored['blob']} (sha256 {result.stored['sha256'][:12]})")
    if not result.passed:
        print(f"{report['candidate']['ref']} is refused by the evaluation gate: `promote` will not move "
              f"{report['candidate']['ref'].split('@')[0]}@{args.against or 'ALIAS'} to it", file=sys.stderr)
        return GateRefused.exit_code
    return 0


def _dataset(store: ModelStore, args: argparse.Namespace) -> int:
    datasets = Datasets(store)
    if args.action != "list" and not args.target:
        what = "DIR" if args.action == "publish" else "NAME@VERSION"
        raise InvalidInput(f"dataset {args.action} needs a {what}")
    if args.action == "publish":
        m = datasets.publish(args.target)
        print(f"published data set {m.ref} ({m.rows} rows, sha256 {m.sha256}) to {store.where}")
        return 0
    rows = datasets.list() if args.action == "list" else [datasets.manifest(args.target)]
    if args.json:
        _print_json([m.to_dict() for m in rows] if args.action == "list" else rows[0].to_dict())
        return 0
    _table([("DATASET", "TASK", "ROWS", "FEATURES", "SHA256")] +
           [(m.ref, m.task.value, str(m.rows), str(m.features), m.sha256) for m in rows])
    return 0


def _aliases(store: ModelStore, args: argparse.Namespace) -> int:
    name, _ = parse_ref(args.name)
    rows = Aliases(store).list(name)
    if args.json:
        _print_json([a.to_dict() for a in rows])
        return 0
    if not rows:
        if not store.versions(name):
            raise store._no_model(name)
        print(f"model '{name}' has no aliases: `modelship-models promote {name}@VERSION --alias NAME "
              "--reason WHY` creates one", file=sys.stderr)
        return 0
    _table([("ALIAS", "VERSION", "SHA256", "MOVED", "BY", "MOVES")] +
           [(a.alias, a.version, a.sha256[:12], a.moved_at, a.moved_by, str(a.moves)) for a in rows])
    return 0


def _history(store: ModelStore, args: argparse.Namespace) -> int:
    name, _ = parse_ref(args.name)
    if args.alias:
        moves = Aliases(store).history(name, validate_alias(args.alias))
        check_chain(moves)
        if args.json:
            _print_json(moves)
            return 0
        _table([("SEQ", "WHEN", "FROM", "TO", "WHO", "REPORT", "WHY")] + [
            (str(m["seq"]), m["when"], m["from"] or "-", m["to"], m["who"],
             ("FORCED" if m.get("forced") else "") + (f" {m['report']['verdict']} vs {m['report']['against']}"
                                                       if m.get("report") else ""),
             m["why"]) for m in moves])
        return 0
    entries = store.history(name)
    if not entries:
        raise store._no_model(name)
    if args.json:
        _print_json(entries)
        return 0
    _table([("VERSION", "PUBLISHED", "PUBLISHER", "SHA256")] +
           [(h["version"], h.get("published_at", ""), h.get("publisher", ""), h.get("sha256", "")[:12])
            for h in entries])
    return 0


def aliases_naming(store: ModelStore, manifest: Any) -> list[str]:
    """The aliases that name ``manifest``'s version now (for ``show``)."""
    return [a.alias for a in Aliases(store).list(manifest.name) if a.version == manifest.version]


COMMANDS: dict[str, Callable[[ModelStore, argparse.Namespace], int]] = {
    "promote": _promote, "evaluate": _evaluate, "dataset": _dataset, "aliases": _aliases,
    "history": _history,
}


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())

