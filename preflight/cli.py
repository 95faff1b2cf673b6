"""``modelship-doctor --stack dev``: every prerequisite of the first ``pulumi up``, checked.

Exit codes: 0 every check passed (warnings allowed), 1 a check failed, 2 bad arguments.
Each failure names what is wrong and the command that fixes it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from preflight.azure import check_identity, check_model, check_names, check_roles
from preflight.checks import Context, Result, check_backend, check_secrets, check_tools, load_stack, run_tool

ROOT = Path(__file__).resolve().parent.parent


def diagnose(ctx: Context) -> list[Result]:
    """All checks, in the order docs/azure.md's day-one list does them."""
    results = load_stack(ctx)
    results += check_tools(ctx)
    results += check_identity(ctx)
    results += check_roles(ctx)
    results += check_secrets(ctx)
    results += check_backend(ctx)
    results += check_model(ctx)  # also learns whether the stack is deployed (for the DNS label)
    results += check_names(ctx)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelship-doctor",
                                     description="Check every prerequisite of the first pulumi up.")
    parser.add_argument("--stack", default="dev", help="stack whose Pulumi.<stack>.yaml is checked")
    parser.add_argument("--for", dest="action", choices=("up", "preview"), default="up",
                        help="what comes next: 'preview' needs no image builder (default: up)")
    parser.add_argument("--project", type=Path, default=ROOT,
                        help="project directory (default: this checkout)")
    args = parser.parse_args(argv)
    ctx = Context(stack=args.stack, root=args.project, env=os.environ, run=run_tool(os.environ),
                  action=args.action)
    results = diagnose(ctx)
    width = max(len(r.check) for r in results)
    for r in results:
        print(f"{r.status:<4} {r.check:<{width}}  {r.message}")
        if r.fix and r.status != "ok":
            print(f"     {'':<{width}}  fix: {r.fix}")
    failed = [r for r in results if r.status == "FAIL"]
    print(f"{len(failed)} failed, {sum(r.status == 'warn' for r in results)} warnings, "
          f"{sum(r.status == 'ok' for r in results)} ok", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
