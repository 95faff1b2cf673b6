"""The release sub-commands of ``modelship-models``: promote, aliases, history (and evaluate).

They live here, not in :mod:`modelstore.cli`, so the publish/fetch CLI stays one job; ``cli`` adds
them to its parser with :func:`add_commands` and dispatches through :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from modelstore.aliases import Aliases, check_chain, validate_alias
from modelstore.errors import InvalidInput
from modelstore.reports import promotion_gate
from modelstore.store import ModelStore, parse_ref


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("promote", parents=[common],
                       help="move an alias (e.g. production) to a version that passed the evaluation gate")
    p.add_argument("ref", metavar="NAME@VERSION")
    p.add_argument("--alias", required=True, help="alias to move, e.g. production")
    p.add_argument("--reason", required=True, help="why (recorded in the alias history)")
    p.add_argument("--force", action="store_true",
                   help="move without a passing evaluation report (recorded as forced)")
    p.add_argument("--json", action="store_true", help="print the recorded move as JSON")

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
    "promote": _promote, "aliases": _aliases, "history": _history,
}


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())

