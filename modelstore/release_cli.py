"""The release sub-commands of ``modelship-models``: evaluate, dataset, promote, rollback, aliases,
history.

They live here, not in :mod:`modelstore.cli`, so the publish/fetch CLI stays one job; ``cli`` adds
them to its parser with :func:`add_commands` and dispatches through :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelstore.aliases import ROLLBACK, Aliases, RollBack, check_chain, validate_alias
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

    p = sub.add_parser("rollback", parents=[common],
                       help="after a canary rejected NAME@VERSION: move the alias back to the version that "
                            "kept serving (only if it still names the rejected one) and mark it rejected")
    p.add_argument("ref", metavar="NAME@VERSION", help="the rejected version")
    p.add_argument("--alias", required=True, help="the alias that released it, e.g. production")
    p.add_argument("--to", required=True, metavar="VERSION", help="the version that kept serving")
    p.add_argument("--reason", required=True, help="the canary's verdict with its figures (recorded)")
    p.add_argument("--by", required=True, metavar="CANARY",
                   help="who rolled it back, e.g. canary:argo-rollouts "
                        "(recorded with the signed-in identity)")
    p.add_argument("--evidence", type=Path, metavar="FILE.json",
                   help="the canary's evidence (a JSON object), recorded as the move's report")
    p.add_argument("--serving-sha256", metavar="SHA256",
                   help="the serving model's sha256: nothing is moved unless it is VERSION's")
    p.add_argument("--json", action="store_true", help="print what was done as JSON")

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


def _rollback(store: ModelStore, args: argparse.Namespace) -> int:
    name, rejected = parse_ref(args.ref)
    if "@" not in args.ref:
        raise InvalidInput(f"rollback needs NAME@VERSION (the rejected version), got {args.ref!r}")
    evidence: dict[str, Any] = {}
    if args.evidence is not None:
        try:
            evidence = json.loads(args.evidence.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"--evidence {args.evidence}: not a readable JSON file ({exc})") from None
    done = Aliases(store).roll_back(name, args.alias, rejected, args.to, args.reason, by=args.by,
                                    evidence=evidence, serving_sha256=args.serving_sha256)
    print(describe_rollback(name, args.alias, rejected, done) if not args.json else
          json.dumps(dataclasses.asdict(done), indent=2, sort_keys=True))
    return 0


def describe_rollback(name: str, alias: str, rejected: str, done: RollBack) -> str:
    """One line saying what :meth:`Aliases.roll_back` did (the CLI's and ``make up``'s)."""
    if done.moved:
        m = done.record
        return (f"{name}@{alias}: {m['from']} -> {m['to']} (move {m['seq']}, rollback by {m['who']}); "
                f"{rejected} is marked rejected: not released again without --force")
    cur = done.current
    now = f"{cur['to']} (move {cur['seq']} by {cur['who']} at {cur['when']})" if cur else "nothing"
    return (f"{name}@{alias} was left as it is: it names {now}, not the rejected {rejected}; "
            "whoever moved it made the newer decision")


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
    _table([("ALIAS", "VERSION", "SHA256", "MOVED", "BY", "MOVES", "REJECTED")] +
           [(a.alias, a.version, a.sha256[:12], a.moved_at, a.moved_by, str(a.moves),
             ", ".join(a.rejected) or "-") for a in rows])
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
            (str(m["seq"]), m["when"], m["from"] or "-", m["to"], m["who"], _report_cell(m), m["why"])
            for m in moves])
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


def _report_cell(move: dict[str, Any]) -> str:
    report = move.get("report") or {}
    if move.get("kind") == ROLLBACK:
        return f"ROLLBACK {report.get('kind', 'canary')} {report.get('verdict', 'fail')}"
    text = "FORCED" if move.get("forced") else ""
    if move.get("overrides_rejection"):
        text += " over rejection"
    if report:
        text += f" {report.get('verdict')} vs {report.get('against')}"
    return text.strip()


def aliases_naming(store: ModelStore, manifest: Any) -> list[str]:
    """The aliases that name ``manifest``'s version now (for ``show``)."""
    return [a.alias for a in Aliases(store).list(manifest.name) if a.version == manifest.version]


COMMANDS: dict[str, Callable[[ModelStore, argparse.Namespace], int]] = {
    "promote": _promote, "rollback": _rollback, "evaluate": _evaluate, "dataset": _dataset,
    "aliases": _aliases, "history": _history,
}


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())

