"""Both pipelines run evaluate -> promote before they fetch and deploy the alias; a promotion can start
the Azure pipeline through its webhook trigger."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _steps(node):
    if isinstance(node, dict):
        if "steps" in node:
            yield node["steps"]
        for value in node.values():
            yield from _steps(value)
    elif isinstance(node, list):
        for value in node:
            yield from _steps(value)


def test_azure_pipeline_promotes_the_candidate_and_listens_to_promotions() -> None:
    doc = yaml.safe_load((REPO / "azure-pipelines.yml").read_text())
    assert [w["webhook"] for w in doc["resources"]["webhooks"]] == ["modelPromoted"]
    assert [p["name"] for p in doc["parameters"]] == ["modelCandidate"]
    deploys = [s for steps in _steps(doc) for s in steps
               if re.search(r"cloud-deploy\.sh deploy$", (s.get("inputs") or {}).get("inlineScript", ""),
                            re.M)]
    assert len(deploys) == 1
    assert deploys[0]["env"]["MODEL_CANDIDATE"] == "${{ parameters.modelCandidate }}"


def test_github_deploy_job_promotes_before_it_fetches() -> None:
    doc = yaml.safe_load((REPO / ".github" / "workflows" / "delivery.yml").read_text())
    runs = [s.get("run", "") for s in doc["jobs"]["deploy"]["steps"]]
    promote = runs.index("bash scripts/cloud-deploy.sh promote-candidate")
    assert promote < runs.index("bash scripts/cloud-deploy.sh fetch-model")
    candidate = {"MODEL_CANDIDATE": "${{ vars.MODEL_CANDIDATE }}"}
    assert doc["jobs"]["deploy"]["steps"][promote]["env"] == candidate
    assert not [r for r in runs if "promote-candidate" in r and r is not runs[promote]]


def test_the_dev_stack_deploys_the_production_alias() -> None:
    stack = yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text())["config"]
    assert stack["modelship:modelVersion"] == stack["modelship:releaseAlias"] == "production"
