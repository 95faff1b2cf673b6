"""The architecture diagram drawn from recorded resources (delivery/diagram.py)."""

from __future__ import annotations

import re
from pathlib import Path

from delivery.diagram import draw
from delivery.plan import record_stack, walk_dependencies
from tests.delivery.test_plan import _nodes


def test_diagram_files_are_written_from_the_nodes(tmp_path: Path) -> None:
    written = draw(_nodes(), tmp_path / "arch", formats=("png", "dot"))
    assert [p.name for p in written] == ["arch.png", "arch.dot"]
    svg = (tmp_path / "arch.dot").read_text()
    # Every custom resource but the provider is a node; the component is a cluster.
    for label in ("rg", "acr", "deploy", "svc (ModelService)"):
        assert label in svg
    assert "provider" not in svg
    assert (tmp_path / "arch.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_diagram_shows_both_paths_a_legend_and_the_right_icons(tmp_path: Path) -> None:
    nodes = walk_dependencies(record_stack("dev"))
    dot = draw(nodes, tmp_path / "arch", formats=("dot",))[0].read_text()
    # The user's path and the model's path, each in its own colour, and the legend for them.
    for label in ("1. resolve", "2. HTTP :80 (load balancer)", "3. pods :8080", "publish model",
                  "fetched into the build", "run by digest", "Legend", "depends on (created first)",
                  "a user's request", "the model's bytes", ".westeurope.cloudapp.azure.com"):
        assert label in dot, f"{label!r} missing from the diagram"
    assert dot.count('color="#1f6feb"') >= 4 and dot.count('color="#d9730d"') >= 4
    # PodDisruptionBudget: not the LimitRange ("limits") icon.
    pdb = re.search(r'\[[^\[\]]*PodDisruptionBudget[^\[\]]*\]', dot).group(0)
    assert "limits.png" not in pdb and pdb.count("k8s.png") == 1, pdb
