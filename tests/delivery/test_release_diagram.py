"""The release diagram is generated from the analysis definition and the committed one is current."""

from __future__ import annotations

import dataclasses

from delivery.release_diagram import ROOT, dot_source
from modelship_contract.canary import DEFAULT, Step


def test_the_committed_diagram_source_is_current() -> None:
    assert (ROOT / "docs" / "release.dot").read_text() == dot_source(), (
        "docs/release.dot is stale: run `.venv/bin/python -m delivery.release_diagram`")


def test_the_diagram_follows_the_definition() -> None:
    other = dataclasses.replace(DEFAULT, steps=(Step(5, 60), Step(25, 60), Step(75, 60)))
    source = dot_source(other)
    assert "5% to canary\\nhold 60 s" in source and "75% to canary" in source
    assert source.count("shape=diamond") == 3 and dot_source() == dot_source()
