"""Draw the release flow (docs/release.png) from the canary analysis definition.

``python -m delivery.release_diagram`` writes ``docs/release.dot`` (the source, byte-identical on
every run for the same definition) and renders ``docs/release.png`` with Graphviz' ``dot``.
The steps, holds and thresholds in the picture are the ones ``make up`` and the Rollout use.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from modelship_contract.canary import DEFAULT, AnalysisDefinition

ROOT = Path(__file__).resolve().parent.parent


def dot_source(d: AnalysisDefinition = DEFAULT) -> str:
    rules = (f"error rate <= stable + {d.error_rate_margin:g}\\n"
             f"p99 <= max({d.p99_ratio:g}x stable, stable + {d.p99_margin_seconds:g} s)\\n"
             f"{d.drift_test.value.upper()} of predicted '{d.drift_output}' <= {d.drift_threshold:g}\\n"
             f"needs >= {d.min_requests} requests, >= {d.min_predictions} predictions per side")
    lines = [
        "digraph release {",
        '  graph [rankdir=LR, fontname="Helvetica", fontsize=11, nodesep=0.4];',
        '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
        '  gate [label="evaluate on the golden set\\n(promote refuses a worse model)"];',
        '  start [label="new version: smoke test,\\nin the front door / Rollout at 0%"];',
        "  gate -> start;",
    ]
    previous = "start"
    for i, step in enumerate(d.steps, 1):
        lines.append(f'  s{i} [label="{step.weight}% to canary\\nhold {step.hold_seconds} s"];')
        lines.append(f'  a{i} [shape=diamond, fillcolor="#fff6e0", label="analysis {i}"];')
        lines.append(f"  {previous} -> s{i};")
        lines.append(f"  s{i} -> a{i};")
        lines.append(f'  a{i} -> rollback [label="fail / no evidence\\nafter {d.max_wait_seconds} s", '
                     'color="#b03030", fontcolor="#b03030"];')
        lines.append(f'  a{i} -> a{i} [label="inconclusive:\\nwait for traffic", style=dashed];')
        previous = f"a{i}"
    lines += [
        '  promote [fillcolor="#e3f4e3", label="100% to the new version\\n(stable drained)"];',
        f'  {previous} -> promote [label="pass", color="#2f7d2f", fontcolor="#2f7d2f"];',
        '  rollback [fillcolor="#fbe9e9", label="rollback: canary weight 0, drained;\\n'
        'stable serves every request"];',
        f'  rules [shape=note, fillcolor="#ffffff", label="{rules}"];',
        "}",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    source = dot_source()
    (ROOT / "docs" / "release.dot").write_text(source)
    result = subprocess.run(["dot", "-Tpng", "-o", str(ROOT / "docs" / "release.png")], input=source,
                            text=True, capture_output=True, timeout=60, check=False)
    if result.returncode != 0:
        print(f"dot failed: {result.stderr.strip()}", file=sys.stderr)
        return 1
    print("wrote docs/release.dot and docs/release.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
