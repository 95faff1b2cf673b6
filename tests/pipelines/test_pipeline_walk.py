"""Both pipelines walked per trigger: the jobs that run and every step's preconditions.

The shipped files pass; each blocker of issue 9, reintroduced into a copy of the texts, makes the
walk fail with the precondition it breaks.
"""

from __future__ import annotations

import dataclasses

import pytest

from tests.pipelines.walk import REPO, TRIGGERS, Sources, documented_identities, violations, walk

PIPELINES = ("github", "azure")


@pytest.fixture
def sources() -> Sources:
    return Sources.from_repo()


@pytest.mark.parametrize("trigger", TRIGGERS)
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_every_step_finds_its_preconditions(sources: Sources, pipeline: str, trigger: str) -> None:
    assert violations(sources, pipeline, trigger) == []


def _kinds(sources: Sources, pipeline: str, trigger: str) -> dict[str, list[str]]:
    return {job.name: [a.kind for a in job.actions] for job in walk(sources, pipeline, trigger)}


def test_the_jobs_each_trigger_runs(sources: Sources) -> None:
    assert list(_kinds(sources, "github", "pull_request")) == ["test", "preview"]
    assert list(_kinds(sources, "github", "push")) == ["test", "deploy"]
    assert list(_kinds(sources, "azure", "pull_request")) == ["Verify.test_preview"]
    assert list(_kinds(sources, "azure", "push")) == ["Verify.test_preview", "Deploy.deploy"]
    for pipeline in PIPELINES:
        assert not any("up" in kinds for kinds in _kinds(sources, pipeline, "pull_request").values())


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_a_failed_smoke_test_rolls_back_and_records_nothing(sources: Sources, pipeline: str) -> None:
    (deploy,) = [k for name, k in _kinds(sources, pipeline, "failure").items() if "up" in k]
    first_smoke = deploy.index("smoke")
    after = deploy[first_smoke + 1:]
    assert "record-good" not in deploy
    assert after.index("fetch-model") < after.index("acr-login") < after.index("up") < after.index("smoke")
    (ok,) = [k for name, k in _kinds(sources, pipeline, "push").items() if "up" in k]
    assert ok[-1] == "record-good" and ok.count("up") == 1


def test_documented_identities_are_what_the_docs_say(sources: Sources) -> None:
    assert documented_identities(sources.docs) == {
        "repo:OWNER/REPO:pull_request", "repo:OWNER/REPO:environment:dev", "modelship-azure-wif"}


def _with(sources: Sources, field: str, old: str, new: str) -> Sources:
    text = getattr(sources, field)
    assert old in text, f"{field} no longer contains {old!r}: update this test"
    return dataclasses.replace(sources, **{field: text.replace(old, new)})


BLOCKERS = [
    ("2 no secrets provider", "stack_file", "secretsprovider: azurekeyvault://", "# secretsprovider: x",
     "github", "push", "would prompt for a passphrase"),
    ("3 preview on push presents ref:refs/heads/main", "github",
     "    if: github.event_name == 'pull_request'\n", "", "github", "push",
     "signs in to Azure as 'repo:OWNER/REPO:ref:refs/heads/main'"),
    ("4 GitHub deploy without ACR login", "github",
     "        run: bash scripts/cloud-deploy.sh prepare-push\n",
     "        run: 'true'\n", "github", "push", "up pushes the image before acr-login"),
    ("5 GitHub PR preview without the model", "github",
     "      - name: Pull the model named by the stack config (the preview shows the real service diff)\n"
     "        run: bash scripts/cloud-deploy.sh fetch-model\n", "", "github", "pull_request",
     "preview without the model fetched first"),
    ("5 script preview without the model", "script",
     '    fetch_model "$ROOT"\n    doctor preview', "    doctor preview", "azure", "pull_request",
     "preview without the model fetched first"),
    ("7 builder not created", "script", "prepare_push() {  # everything the image push of `pulumi up` needs "
     "on this host\n  ensure_builder\n", "prepare_push() {\n", "azure", "push",
     "up pushes the image before builder"),
    ("7 environment macro syntax", "azure", "modelship-${{ variables.pulumiStack }}",
     "modelship-$(pulumiStack)", "azure", "push", "uses macro syntax"),
    ("policy pack dropped from up", "github", "          policyPacks: policy\n          message:",
     "          message:", "github", "push", "up without the policy pack"),
    ("undocumented service connection", "azure", "value: modelship-azure-wif", "value: my-connection",
     "azure", "pull_request", "signs in to Azure as 'my-connection'"),
    ("Azure deploy without the model", "script", '    fetch_model "$ROOT"\n    prepare_push\n',
     "    prepare_push\n", "azure", "push", "up without the model fetched first"),
    ("GitHub deploy without the doctor", "github",
     "        run: modelship-doctor --stack \"$PULUMI_STACK\" --for up\n",
     "        run: 'true'\n", "github", "push", "up before the doctor checked its prerequisites"),
    ("kubelogin not installed", "azure", "          - task: KubeloginInstaller@0\n",
     "          - task: PowerShell@2\n", "azure", "pull_request", "preview before kubelogin is installed"),
]


@pytest.mark.parametrize(("what", "field", "old", "new", "pipeline", "trigger", "expected"), BLOCKERS,
                         ids=[b[0] for b in BLOCKERS])
def test_reintroduced_blocker_fails_the_walk(sources, what, field, old, new, pipeline, trigger, expected):
    broken = _with(sources, field, old, new)
    found = violations(broken, pipeline, trigger)
    assert any(expected in v for v in found), found


def test_pipeline_roles_are_scoped_where_they_exist_before_the_first_up(sources: Sources) -> None:
    """Blocker 6: the stack creates its resource group, so the roles that let it do so cannot be
    granted on that group; the docs grant them on the subscription."""
    from components.testing import by_type, run_stack
    from settings import Settings

    settings = Settings.from_mapping({"storageAccountName": "modelshipdev01", "dnsLabel": "modelship-dev",
                                      "registryName": "modelshipacr01"})
    run = run_stack(settings)
    assert [r.inputs["resourceGroupName"] for r in by_type(run, "azure-native:resources:ResourceGroup")] == [
        settings.resource_group_name]
    azure_md = (REPO / "docs" / "azure.md").read_text()
    for text in (sources.docs, azure_md):
        flat = " ".join(text.replace("*", "").split())
        at = flat.index("Role Based Access Control Administrator")
        assert "on the subscription" in flat[at:at + 80], flat[at:at + 80]
        assert "on the stack's resource group" not in flat
