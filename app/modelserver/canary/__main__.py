"""``python -m modelserver.canary``: print the analysis definition, or judge a canary.

    python -m modelserver.canary show
    python -m modelserver.canary analyze --prometheus URL --canary-hash H --stable-hash H \\
        [--window-seconds N] [--wait-seconds N] [--definition FILE] [--auth none|azure-workload-identity]

``analyze`` prints the verdict (one summary line on stderr, the figures as JSON on stdout) and
exits 0 on pass, 1 on fail, 3 when still inconclusive after ``--wait-seconds``, 2 on a bad
argument or definition, 4 when Prometheus or the identity endpoint cannot be reached. The Argo
Rollouts Job metric counts any non-zero exit as a failed measurement, so the Rollout aborts
(back to stable) on a failure, on missing evidence and on a metrics outage alike.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from modelship_contract.canary import AnalysisDefinition, DefinitionError

from .analysis import Status, analyze
from .azure import AzureAuthError, WorkloadIdentityToken
from .prometheus import PrometheusClient, PrometheusError

EXIT = {Status.PASS: 0, Status.FAIL: 1, Status.INCONCLUSIVE: 3}
EXIT_USAGE = 2
EXIT_UNREACHABLE = 4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelserver.canary", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="print the analysis definition as JSON")
    show.add_argument("--definition", type=Path, help="a JSON definition instead of the built-in one")
    run = sub.add_parser("analyze", help="compare canary and stable once (or until conclusive)")
    run.add_argument("--prometheus", required=True, help="Prometheus (or Azure Monitor workspace) query URL")
    run.add_argument("--canary-hash", required=True, help="pod template hash of the canary")
    run.add_argument("--stable-hash", required=True, help="pod template hash of the stable version")
    run.add_argument("--window-seconds", type=int, help="query window (default: the definition's)")
    run.add_argument("--wait-seconds", type=int, default=None,
                     help="keep polling while inconclusive (default: the definition's max_wait_seconds)")
    run.add_argument("--definition", type=Path, help="a JSON definition instead of the built-in one")
    run.add_argument("--auth", choices=["none", "azure-workload-identity"], default="none")
    args = parser.parse_args(argv)
    try:
        definition = AnalysisDefinition.load(args.definition)
        if args.command == "show":
            print(json.dumps(definition.to_dict(), indent=2))
            return 0
        if args.window_seconds is not None and args.window_seconds < 1:
            raise DefinitionError(f"--window-seconds must be positive, got {args.window_seconds}")
        token = WorkloadIdentityToken() if args.auth == "azure-workload-identity" else None
        client = PrometheusClient(args.prometheus, token=token)
        wait = definition.max_wait_seconds if args.wait_seconds is None else max(0, args.wait_seconds)
        verdict = analyze(
            client, definition, args.canary_hash, args.stable_hash,
            args.window_seconds or definition.window_seconds, wait_seconds=wait,
            on_inconclusive=lambda v: print(f"canary analysis: {v.summary()}; waiting for traffic",
                                            file=sys.stderr, flush=True),
        )
    except (DefinitionError, ValueError) as exc:
        print(f"canary analysis: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (PrometheusError, AzureAuthError) as exc:
        print(f"canary analysis: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(f"canary analysis: {verdict.summary()}", file=sys.stderr)
    print(json.dumps(verdict.to_dict(), indent=2))
    return EXIT[verdict.status]


if __name__ == "__main__":
    sys.exit(main())
