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
    assert list(_kinds(sources, "github", "push")) == ["test", "deploy", "deploy-prod"]
    assert list(_kinds(sources, "github", "failure")) == ["test", "deploy"]  # prod never sees a failed dev
    assert list(_kinds(sources, "azure", "pull_request")) == ["Verify.test_preview"]
    assert list(_kinds(sources, "azure", "push")) == [
        "Verify.test_preview", "Deploy.deploy", "Prod.deploy_prod"]
    assert list(_kinds(sources, "azure", "failure")) == ["Verify.test_preview", "Deploy.deploy"]
    # An aborted canary in dev: prod never sees it either.
    assert list(_kinds(sources, "github", "analysis-failure")) == ["test", "deploy"]
    assert list(_kinds(sources, "azure", "analysis-failure")) == ["Verify.test_preview", "Deploy.deploy"]
    # Dev passes, prod's smoke test fails: both jobs run.
    assert list(_kinds(sources, "github", "prod-failure")) == ["test", "deploy", "deploy-prod"]
    assert list(_kinds(sources, "azure", "prod-failure")) == [
        "Verify.test_preview", "Deploy.deploy", "Prod.deploy_prod"]
    for pipeline in PIPELINES:
        assert not any("up" in kinds for kinds in _kinds(sources, pipeline, "pull_request").values())


def _ups(sources: Sources, pipeline: str, trigger: str) -> list[list[str]]:
    return [k for k in _kinds(sources, pipeline, trigger).values() if "up" in k]


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_a_failed_smoke_test_rolls_back_and_records_nothing(sources: Sources, pipeline: str) -> None:
    (deploy,) = _ups(sources, pipeline, "failure")
    first_smoke = deploy.index("smoke")
    after = deploy[first_smoke + 1:]
    assert "record-good" not in deploy and "handoff" not in deploy
    assert after.index("fetch-model") < after.index("acr-login") < after.index("up") < after.index("smoke")
    assert after.index("up") < after.index("canary") < after.index("smoke")  # the rollback is a release too
    (ok, prod) = _ups(sources, pipeline, "push")
    assert ok[-1] == "handoff" and ok.index("smoke") < ok.index("record-good") < ok.index("handoff")
    assert ok.count("up") == 1
    for release in (ok, prod):  # the smoke test judges the promoted canary, in dev and in prod
        assert release.index("up") < release.index("canary") < release.index("smoke")


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_an_aborted_canary_fails_the_run_and_leaves_the_stable_version_serving(sources: Sources,
                                                                              pipeline: str) -> None:
    """Argo Rollouts has scaled the canary away and kept the stable ReplicaSet: the run must fail
    there, after moving the alias it deployed back to the version that kept serving, and neither
    record the release as good, hand it to prod, nor apply anything else."""
    (deploy,) = [job for job in walk(sources, pipeline, "analysis-failure")
                 if "up" in [a.kind for a in job.actions]]
    kinds = [a.kind for a in deploy.actions]
    assert deploy.failed
    assert kinds[-2:] == ["canary", "alias-back"] and kinds.count("up") == 1
    assert not {"smoke", "record-good", "handoff"} & set(kinds)
    # Only there: a canary that passes moves no alias back.
    assert not any(a.kind == "alias-back" for t in ("push", "failure", "prod-failure")
                   for j in walk(sources, pipeline, t) for a in j.actions)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_dev_deploy_smoke_approval_prod_deploy_of_the_same_digest_smoke(sources: Sources,
                                                                         pipeline: str) -> None:
    """The order of issue 14: dev deploy (its up tests the image by digest before the workload) ->
    smoke -> hand the verified digest over -> approval -> prod deploy of that digest -> smoke."""
    jobs = [j for j in walk(sources, pipeline, "push") if any(a.kind == "up" for a in j.actions)]
    dev, prod = ([a for a in j.actions if a.kind not in ("secrets-check", "backend-login")] for j in jobs)
    kinds = [a.kind for a in dev]
    assert kinds.index("venv-path") < kinds.index("up") < kinds.index("smoke") < kinds.index("handoff")
    assert {a.stack for a in dev if a.kind in ("up", "smoke") and a.stack} == {"dev"}
    kinds = [a.kind for a in prod]
    assert kinds[0] == "approval" and "prod" in prod[0].subject
    assert (kinds.index("read-release") < kinds.index("release-config") < kinds.index("policy-config")
            < kinds.index("up") < kinds.index("smoke"))
    assert {a.stack for a in prod if a.stack} == {"prod"}
    assert not {"fetch-model", "builder", "acr-login", "make-test"} & set(kinds), "prod never builds"


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_a_failed_prod_smoke_test_rolls_prod_back_to_its_previous_release(sources: Sources,
                                                                          pipeline: str) -> None:
    """Dev passed; prod's smoke test fails after its canary: prod goes back to the release it ran
    before (its own previousRelease output), through the same policy-checked up, canary and smoke
    test, and the run fails; dev is left as it is (its release passed there)."""
    jobs = {j.name: j for j in walk(sources, pipeline, "prod-failure")}
    prod = next(j for j in jobs.values() if any(a.kind == "up" and a.stack == "prod" for a in j.actions))
    kinds = [a.kind for a in prod.actions if a.kind not in ("secrets-check", "backend-login", "doctor")]
    assert prod.failed
    first = kinds.index("smoke")
    assert kinds[first + 1:] == ["read-previous", "release-config", "policy-config", "up", "canary", "smoke"]
    assert {a.stack for a in prod.actions if a.kind in ("up", "smoke")} == {"prod"}
    assert not any(j.failed for j in jobs.values() if j is not prod)


def test_every_subject_a_job_presents_is_documented_and_each_documented_one_used(sources: Sources) -> None:
    presented = {a.subject for p in PIPELINES for t in TRIGGERS for j in walk(sources, p, t)
                 for a in j.actions if a.kind == "azure-login"}
    assert presented == documented_identities(sources.docs)


def test_documented_identities_are_what_the_docs_say(sources: Sources) -> None:
    assert documented_identities(sources.docs) == {
        "repo:OWNER/REPO:pull_request", "repo:OWNER/REPO:environment:dev", "repo:OWNER/REPO:environment:prod",
        "modelship-azure-wif", "modelship-azure-wif-prod"}


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
    ("GitHub prod job without its environment (no approval)", "github",
     "    timeout-minutes: 60\n    environment: prod\n", "    timeout-minutes: 60\n", "github", "push",
     "up of prod without the approval of a prod environment"),
    ("Azure prod stage on the dev environment", "azure", "environment: modelship-${{ variables.prodStack }}",
     "environment: modelship-${{ variables.pulumiStack }}", "azure", "push",
     "up of prod without the approval of a prod environment"),
    ("prod promoted before dev handed over its digest", "github",
     '        run: echo "digest=$(bash scripts/cloud-deploy.sh release)" >> "$GITHUB_OUTPUT"\n',
     "        run: 'true'\n", "github", "push", "up of prod before an earlier job handed over the digest"),
    ("prod up without the verified digest in the policy pack", "script",
     '--policy-pack policy --policy-pack-config "$policy"', "--policy-pack policy", "azure", "push",
     "up of prod without --policy-pack-config"),
    ("prod stage runs without dev's smoke test", "azure", "    dependsOn: Deploy\n",
     "    dependsOn: Verify\n", "azure", "push", "up of prod before an earlier job smoke-tested dev"),
    ("prod job presents an undocumented subject", "docs", "`repo:OWNER/REPO:environment:prod`: federate",
     "`environment:prod`: federate", "github", "push",
     "signs in to Azure as 'repo:OWNER/REPO:environment:prod'"),
    ("dev up without the virtualenv on PATH (the container test)", "github",
     '          echo "$PWD/.venv/bin" >> "$GITHUB_PATH"\n', "", "github", "push",
     "before the project's virtualenv is on PATH"),
    # Issue 13: the run's outcome is the canary's.
    ("script smokes before the canary", "script", '    canary || die "the canary did not pass (aborted',
     '    true || die "the canary did not pass (aborted', "azure", "push",
     "smoke test before the canary finished"),
    ("prod smokes before its canary", "script", '  canary || die "the canary did not pass in $PULUMI_STACK',
     '  true || die "the canary did not pass in $PULUMI_STACK', "github", "push",
     "smoke test before the canary finished"),
    ("GitHub smokes before the canary", "github", "        run: bash scripts/cloud-deploy.sh canary\n",
     "        run: 'true'\n", "github", "push", "smoke test before the canary finished"),
    ("kubectl not installed", "azure", "                - task: KubectlInstaller@0\n",
     "                - task: PowerShell@2\n", "azure", "push", "canary wait before kubectl"),
    # A failed prod smoke test: prod goes back to what it ran before, and the run fails.
    ("prod does not roll back", "script",
     '      bash "$ROOT/scripts/cloud-deploy.sh" rollback-prod || say', "      true || say",
     "github", "prod-failure", "after the failed smoke test prod does not roll back"),
    ("prod rolls back to what it runs now", "script", "pulumi stack output previousRelease --json",
     "pulumi stack output --json", "azure", "prod-failure",
     "after the failed smoke test prod does not roll back"),
    ("a failed prod smoke test passes the run", "script",
     '    die "$PULUMI_STACK failed its smoke test with $digest"', '    say "ignored"', "azure",
     "prod-failure", "a failed prod smoke test does not fail the run"),
    ("an aborted canary is ignored", "script", '    canary || die "the canary did not pass (aborted',
     '    canary || say "the canary did not pass (aborted', "azure", "analysis-failure",
     "the run goes on after an aborted canary (smoke, record-good"),
    # After an aborted canary the alias the stack deploys names the version that kept serving.
    ("the alias is not moved back", "script", '    alias_back "$report"\n', "    true\n", "github",
     "analysis-failure", "alias 'production' still names the rejected version"),
    ("the alias is moved back on every run", "script", 'if [ "$code" = 1 ]; then', 'if true; then', "azure",
     "push", "moves an alias back though no canary aborted"),
]


def test_the_alias_move_back_needs_write_access_to_the_alias_record(sources: Sources) -> None:
    """The pipeline identity writes the alias record: components/store.py must grant it (the stack
    declares that grant: tests/components/test_store.py). Made to fail without it."""
    assert violations(sources, "github", "analysis-failure") == []
    for paths in ((), ("*/*/evaluations/*.json",)):
        broken = dataclasses.replace(sources, writable_records=paths)
        found = violations(broken, "github", "analysis-failure")
        assert any("identity to write the 'production' alias record" in v for v in found), found


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
