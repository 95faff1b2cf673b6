"""A model of the two pipelines, walked per trigger, checking every step's preconditions.

``walk(sources, pipeline, trigger)`` returns the jobs that run for ``trigger`` (``pull_request``,
``push`` to main, ``failure``: a push whose smoke test fails, ``analysis-failure``: a push whose
canary Argo Rollouts aborts, or ``prod-failure``: a push that passes in dev and whose smoke test
fails in prod) with the actions each performs in
order, and ``violations(...)`` lists every precondition a step would find unmet on a real runner:

* Azure sign-in before anything that talks to Azure, presenting an identity the docs tell users to
  set up (GitHub: an OIDC subject listed in docs/pipelines.md; Azure Pipelines: the documented
  service connection);
* the Pulumi CLI and kubelogin installed before ``pulumi preview``/``up``;
* the secrets provider usable without a prompt (a cloud ``secretsprovider`` in the stack file, or
  a passphrase in the job's environment);
* the model fetched and ``modelship-doctor`` run before every preview and up, the policy pack on
  every preview and up;
* a docker-container buildx builder and an ACR login before ``pulumi up`` (it pushes the image),
  and the project's virtualenv on PATH (the image's container test, ``python -m
  delivery.imagetest``, then its SBOM step, ``python -m delivery.sbom push --acr``, which signs
  in to ACR with the job's Azure identity, run inside that ``up`` before the workload takes the
  image);
* a stack that promotes (``promoteFrom`` in its stack file: prod) never builds: its ``up`` needs
  the approval of its environment, the release config and the policy pack configured with the
  verified digest, and an earlier job of the same run that deployed dev, smoke-tested it and
  handed over the digest; a failed prod smoke test fails the run after rolling prod back to the
  release it ran before (read from its own ``previousRelease`` output, set as its release config,
  the policy pack allowing that digest, ``up``, canary, smoke test), recording nothing;
* after every ``pulumi up``, the canary wait (kubectl installed, signed in) before the smoke test:
  the smoke test must judge the promoted release, not a mix of canary and stable pods; an aborted
  canary fails the run there, with nothing recorded, rolled back or deployed after it, except the
  alias move back: a stack that deploys an alias (``modelVersion``) moves it back to the version that
  kept serving (``modelship-models rollback``), signed in, and with an identity the stack lets write
  the alias record (``components.store.RELEASE_RECORD_PATHS``); no alias moves when no canary aborted;
* Azure Pipelines environment names as template expressions, not macros.

``scripts/cloud-deploy.sh`` is read, not assumed: each command's actions come from its case branch
and the functions it calls. Test support only; nothing in the product imports it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
OWNER_REPO = "OWNER/REPO"
TRIGGERS = ("pull_request", "push", "failure", "analysis-failure", "prod-failure")


@dataclasses.dataclass
class Sources:
    """The texts the walk reads; tests mutate one to reintroduce a defect."""

    github: str
    azure: str
    script: str
    stack_file: str
    docs: str
    prod_stack_file: str = ""
    writable_records: tuple[str, ...] = ()
    """Blob paths (``StringLike``) the stack lets the pipeline identity write in the model store."""

    @classmethod
    def from_repo(cls) -> Sources:
        return cls(
            github=(REPO / ".github" / "workflows" / "delivery.yml").read_text(),
            azure=(REPO / "azure-pipelines.yml").read_text(),
            script=(REPO / "scripts" / "cloud-deploy.sh").read_text(),
            stack_file=(REPO / "Pulumi.dev.yaml").read_text(),
            docs=(REPO / "docs" / "pipelines.md").read_text(),
            prod_stack_file=(REPO / "Pulumi.prod.yaml").read_text(),
            writable_records=_writable_records(),
        )

    def stack(self, name: str) -> str:
        """The text of ``Pulumi.<name>.yaml``."""
        files = {"dev": self.stack_file, "prod": self.prod_stack_file}
        if name not in files:
            raise KeyError(f"the walk knows no stack {name!r} (known: {', '.join(files)})")
        return files[name]


@dataclasses.dataclass
class Action:
    kind: str
    """checkout, make-test, pulumi-cli, kubelogin, kubectl, azure-login, backend-login, fetch-model,
    builder, acr-login, venv-path, preview, up, canary, smoke, record-good, handoff (the verified
    digest to the next job), read-release, release-config, policy-config, approval."""
    step: str
    policy: bool = False
    subject: str = ""
    """For azure-login: the identity presented (OIDC subject or service connection); for approval:
    the environment."""
    stack: str = ""
    """The stack a script action works on (PULUMI_STACK of its step)."""
    policy_config: bool = False
    """For up: the policy pack gets a configuration (``--policy-pack-config``)."""


@dataclasses.dataclass
class Job:
    name: str
    actions: list[Action]
    env: dict[str, str]
    after: set[str] = dataclasses.field(default_factory=set)
    """Jobs that finished before this one starts (GitHub ``needs``, Azure stage ``dependsOn``,
    transitively); the others may run at the same time."""
    failed: bool = False
    """The job ends in failure (the trigger's failure happened in it)."""


def _writable_records() -> tuple[str, ...]:
    """The blob paths the stack's ModelStore lets the deploying identity write (its default args)."""
    from components.store import RELEASE_RECORD_PATHS, ModelStoreArgs

    granted = ModelStoreArgs("rg", "account01", "l", deployer_principal_type="ServicePrincipal")
    return RELEASE_RECORD_PATHS if granted.grant_read_to_deployer else ()


def deploys_alias(sources: Sources, stack: str) -> str | None:
    """The alias a stack fetches and deploys (``modelVersion``), or None (a version, or a promoting stack)."""
    from modelship_contract.manifest import is_alias_name

    config = (yaml.safe_load(sources.stack(stack)) or {}).get("config") or {}
    version = str(config.get("modelship:modelVersion", "production"))
    return version if is_alias_name(version) and not promotes(sources, stack) else None


def alias_record_writable(sources: Sources, stack: str) -> bool:
    """Whether the identity may write the record of the alias ``stack`` deploys (StringLike: ``*`` is
    any run of characters, as fnmatch's)."""
    import fnmatch

    from modelstore.aliases import alias_blob_name

    config = (yaml.safe_load(sources.stack(stack)) or {}).get("config") or {}
    name = str(config.get("modelship:modelName", "digits"))
    blob = alias_blob_name(name, deploys_alias(sources, stack) or "x")
    return any(fnmatch.fnmatchcase(blob, pattern) for pattern in sources.writable_records)


# --- scripts/cloud-deploy.sh -------------------------------------------------------------------

_LINE_ACTIONS = (
    (r"\bpulumi login\b", "backend-login"),
    (r"modelship-models fetch", "fetch-model"),
    (r"docker buildx (create|inspect)", "builder"),
    (r"\baz acr login\b", "acr-login"),
    (r"-m delivery\.smoke", "smoke"),
    (r"mark_blob upload", "record-good"),
    (r"-m preflight", "doctor"),
    (r"-m delivery\.argo_status", "canary"),
    (r"pulumi stack output release", "read-release"),
    (r"pulumi stack output previousRelease", "read-previous"),
    (r"pulumi config set release ", "release-config"),
    (r"prod-only-dev-verified-digests", "policy-config"),
    (r"modelship-models rollback", "alias-back"),
)
"""What a script line does, by the command it runs."""


def _functions(script: str) -> dict[str, list[str]]:
    bodies: dict[str, list[str]] = {}
    # Multi-line functions only (`name() {  # comment` ... `}`); one-liners (say, die) do nothing here.
    for match in re.finditer(r"^(\w+)\(\) \{(?:\s*#[^\n]*)?\n(.*?)^\}", script, re.M | re.S):
        bodies[match.group(1)] = match.group(2).splitlines()
    return bodies


def _branches(script: str) -> dict[str, list[str]]:
    case = script[script.index('case "$cmd" in'):]
    return {m.group(1): m.group(2).splitlines()
            for m in re.finditer(r"^  ([\w-]+)\)\n(.*?)\n    ;;", case, re.M | re.S)}


class _Stopped(Exception):
    """The script exits here (a failed canary under ``|| die``)."""

    def __init__(self, actions: list[Action]) -> None:
        self.actions = actions


def script_actions(script: str, command: str, step: str, *, smoke_fails: bool = False,
                   analysis_fails: bool = False, stack: str = "dev",
                   outcome: dict[str, bool] | None = None) -> list[Action]:
    """The actions ``cloud-deploy.sh <command>`` performs, in order. ``outcome["failed"]`` is set
    when the command exits non-zero for this trigger."""
    functions = _functions(script)
    branches = _branches(script)
    if command not in branches:
        raise KeyError(f"cloud-deploy.sh has no command {command!r}")

    def expand(lines: list[str], depth: int = 0) -> list[Action]:
        out: list[Action] = []
        frames: list[str] = []
        """Open ``if``s: ``smoke-then``/``smoke-else`` for ``if smoke``, ``other`` for the rest (both
        of whose branches are assumed to run)."""

        def skipping() -> bool:  # inside the branch of an `if` that this trigger does not take
            return any((f == "smoke-then" and smoke_fails) or (f == "smoke-else" and not smoke_fails)
                       or (f == "aborted" and not analysis_fails)
                       for f in frames)

        for raw in lines:
            line = raw.split(" #")[0].strip()
            if line.startswith("die ") and "smoke-else" in frames and not skipping() and outcome is not None:
                outcome["failed"] = True  # the failed smoke test's branch ends the script in failure
            if not line or line.startswith(("#", "say ", "die ")):
                continue
            if line.startswith("if smoke; then"):
                if not skipping():
                    out.append(Action("smoke", step))
                frames.append("smoke-then")
                continue
            if re.match(r"if .*; then$", line):
                # `if [ "$code" = 1 ]` after the canary wait: the branch of an aborted canary.
                frames.append("aborted" if line == 'if [ "$code" = 1 ]; then' else "other")
            elif line == "else" and frames:
                frames[-1] = "smoke-else" if frames[-1] == "smoke-then" else frames[-1]
                continue
            elif line == "fi" and frames:
                frames.pop()
                continue
            if skipping():
                continue
            try:
                found = _line_actions(line, depth)
            except _Stopped as stop:
                raise _Stopped(out + stop.actions) from None
            out.extend(found)
            # An aborted canary: the `canary` function returns non-zero, and its caller (`canary || die`,
            # or the `canary` command itself) ends the script there.
            if analysis_fails and any(a.kind == "canary" for a in found) and \
                    ("|| die" in line or line == "canary"):
                raise _Stopped(out)
        return out

    def _line_actions(line: str, depth: int) -> list[Action]:
        if depth > 8:
            raise RecursionError("cloud-deploy.sh functions call each other too deep")
        found: list[Action] = []
        again = re.search(r'cloud-deploy\.sh"? ([\w-]+)', line)
        if again:  # the script runs itself with another command
            return expand(branches[again.group(1)], depth + 1)
        if line.startswith("secrets_provider"):
            return [Action("secrets-check", step)]
        first = re.split(r"[\s;]", line, maxsplit=1)[0]
        if first in functions:
            return expand(functions[first], depth + 1)
        if line.startswith("ROOT=") and " smoke" in line:
            return [Action("smoke", step)]
        for pattern, kind in _LINE_ACTIONS:
            if re.search(pattern, line):
                found.append(Action(kind, step))
        for verb in ("preview", "up"):
            if re.search(rf"^pulumi {verb}\b", line):
                found.append(Action(verb, step, policy="--policy-pack policy" in line,
                                    policy_config="--policy-pack-config" in line))
        return found

    try:
        actions = expand(branches[command])
    except _Stopped as stop:
        actions = stop.actions
        if outcome is not None:
            outcome["failed"] = True
    for action in actions:
        action.stack = stack
    return actions


# --- GitHub Actions ------------------------------------------------------------------------------


def _eval_github(expr: str, context: dict[str, Any]) -> bool:
    """Evaluate the small subset of GitHub expressions the workflow uses."""
    py = expr.replace("&&", " and ").replace("||", " or ").replace("!", " not ").replace(" not =", "!=")
    py = re.sub(r"\bfailure\(\)", repr(context["failed"]), py)
    py = re.sub(r"\bsuccess\(\)", repr(not context["failed"]), py)
    py = re.sub(r"\balways\(\)", "True", py)
    py = re.sub(r"steps\.(\w+)\.outcome", lambda m: repr(context["outcomes"].get(m.group(1), "")), py)
    py = py.replace("github.event_name", repr(context["event"])).replace("github.ref", repr(context["ref"]))
    if re.search(r"[A-Za-z_]\w*\.\w", py):
        raise ValueError(f"the walk cannot evaluate {expr!r}")
    return bool(eval(py, {"__builtins__": {}}, {}))  # a fixed, checked subset


def github_subject(job: dict[str, Any], event: str, ref: str) -> str:
    """The OIDC ``sub`` GitHub issues to a job (docs.github.com, OpenID Connect reference,
    "Example subject claims"): the environment wins, then pull_request, then the ref."""
    env = job.get("environment")
    if isinstance(env, dict):
        env = env.get("name")
    if env:
        return f"repo:{OWNER_REPO}:environment:{env}"
    if event == "pull_request":
        return f"repo:{OWNER_REPO}:pull_request"
    return f"repo:{OWNER_REPO}:ref:{ref}"


def _github_steps(job: dict[str, Any], name: str, script: str, context: dict[str, Any],
                  subject: str, smoke_fails: bool, stack: str = "dev",
                  analysis_fails: bool = False, script_smoke_fails: bool = False) -> list[Action]:
    actions: list[Action] = []
    env = job.get("environment")
    if env:
        # A job with an environment waits for its protection rules (the approval) before any step.
        actions.append(Action("approval", "environment", subject=str(env)))
    for step in job.get("steps", []):
        label = step.get("name") or step.get("uses") or step.get("run", "")[:40]
        condition = step.get("if")
        runs = _eval_github(condition, context) if condition else not context["failed"]
        if not runs:
            continue
        uses = str(step.get("uses", "")).split("@")[0]
        with_ = step.get("with") or {}
        if uses == "actions/checkout":
            actions.append(Action("checkout", label))
        elif uses == "azure/login":
            actions.append(Action("azure-login", label, subject=subject))
        elif uses == "azure/use-kubelogin":
            actions.append(Action("kubelogin", label))
        elif uses == "azure/setup-kubectl":
            actions.append(Action("kubectl", label))
        elif uses == "pulumi/actions":
            actions.append(Action("pulumi-cli", label))
            if with_.get("command") in ("preview", "up"):
                actions.append(Action(with_["command"], label, policy=with_.get("policyPacks") == "policy"))
        run = str(step.get("run", ""))
        if "make test" in run:
            actions.append(Action("make-test", label))
        if "modelship-doctor" in run:
            actions.append(Action("doctor", label))
        if re.search(r'\.venv/bin"? >> "\$GITHUB_PATH"', run):
            actions.append(Action("venv-path", label))
        command = re.search(r"cloud-deploy\.sh ([\w-]+)", run)
        if command:
            fails_here = smoke_fails and step.get("id") == "smoke"
            outcome = {"failed": False}
            actions.extend(script_actions(script, command.group(1), label, stack=stack,
                                          analysis_fails=analysis_fails, outcome=outcome,
                                          smoke_fails=script_smoke_fails))
            if command.group(1) == "release" and "$GITHUB_OUTPUT" in run and step.get("id"):
                actions.append(Action("handoff", label))
            if fails_here or (outcome["failed"] and not smoke_fails):
                context["failed"] = True
                context["outcomes"][step.get("id") or "smoke"] = "failure"
            elif step.get("id"):
                context["outcomes"][step["id"]] = "success"
    return actions


def walk_github(sources: Sources, trigger: str) -> list[Job]:
    doc = yaml.safe_load(sources.github)
    doc["on"] = doc.pop(True, doc.get("on"))
    event = "pull_request" if trigger == "pull_request" else "push"
    ref = "refs/pull/1/merge" if event == "pull_request" else "refs/heads/main"
    ran: dict[str, bool] = {}
    jobs: list[Job] = []
    for name, job in doc["jobs"].items():
        needs = job.get("needs", [])
        needs = [needs] if isinstance(needs, str) else needs
        context = {"event": event, "ref": ref, "failed": False, "outcomes": {}}
        runs = all(ran.get(n, False) for n in needs)
        if runs and job.get("if"):
            runs = _eval_github(job["if"], context)
        ran[name] = runs
        if not runs:
            continue
        subject = github_subject(job, event, ref)
        env = {**doc.get("env", {}), **job.get("env", {})}
        stack = str(env.get("PULUMI_STACK", "dev"))
        actions = _github_steps(job, name, sources.script, context, subject, smoke_fails=trigger == "failure",
                                stack=stack, analysis_fails=trigger == "analysis-failure",
                                script_smoke_fails=trigger == "prod-failure" and promotes(sources, stack))
        ran[name] = not context["failed"]  # a failed job's dependents do not run
        after = set(needs) | {a for n in needs for j in jobs if j.name == n for a in j.after}
        jobs.append(Job(name, actions, env, after, failed=context["failed"]))
    return jobs


# --- Azure Pipelines -----------------------------------------------------------------------------


def _eval_azure(expr: str, variables: dict[str, str], failed: bool = False) -> bool:
    """Evaluate and/or/not/eq/ne/succeeded() conditions (the subset the pipeline uses)."""
    tokens = re.findall(r"\w+\(|\)|,|'[^']*'|variables\['[^']+'\]", expr)
    pos = 0

    def parse() -> Any:
        nonlocal pos
        token = tokens[pos]
        pos += 1
        if token.startswith("'"):
            return token[1:-1]
        if token.startswith("variables["):
            return variables[token[len("variables['"):-2]]
        func = token[:-1]
        args = []
        while tokens[pos] != ")":
            if tokens[pos] == ",":
                pos += 1
                continue
            args.append(parse())
        pos += 1
        if func == "succeeded":
            return not failed
        if func == "and":
            return all(args)
        if func == "or":
            return any(args)
        if func == "not":
            return not args[0]
        if func == "eq":
            return str(args[0]).lower() == str(args[1]).lower()
        if func == "ne":
            return str(args[0]).lower() != str(args[1]).lower()
        raise ValueError(f"the walk cannot evaluate {func}() in {expr!r}")

    return bool(parse())


def walk_azure(sources: Sources, trigger: str) -> list[Job]:
    doc = yaml.safe_load(sources.azure)
    variables = {v["name"]: str(v["value"]) for v in doc.get("variables", [])}
    if trigger == "pull_request":
        variables.update({"Build.Reason": "PullRequest", "Build.SourceBranch": "refs/pull/1/merge"})
    else:
        variables.update({"Build.Reason": "BatchedCI", "Build.SourceBranch": "refs/heads/main"})
    jobs: list[Job] = []
    failed = False
    before: dict[str, set[str]] = {}
    """Stage -> the stages that finish before it (dependsOn, transitively; default: the previous)."""
    previous: list[str] = []
    for stage in doc["stages"]:
        depends = stage.get("dependsOn", previous[-1:])
        depends = [depends] if isinstance(depends, str) else list(depends)
        before[stage["stage"]] = set(depends) | {s for d in depends for s in before.get(d, set())}
        previous.append(stage["stage"])
        if stage.get("condition") and not _eval_azure(stage["condition"], variables, failed):
            continue
        if not stage.get("condition") and failed:
            continue
        for job in stage["jobs"]:
            steps = job["steps"] if "steps" in job else job["strategy"]["runOnce"]["deploy"]["steps"]
            actions: list[Action] = []
            job_failed = False
            if "environment" in job:
                # A deployment job waits for its environment's checks (the approval) before any step.
                environment = re.sub(r"\$\{\{ variables\.(\w+) \}\}",
                                     lambda m: variables.get(m.group(1), m.group(0)), str(job["environment"]))
                actions.append(Action("approval", "environment", subject=environment))
            for step in steps:
                if failed and not step.get("condition"):
                    continue  # a step after a failed one does not run (its default condition)
                label = step.get("displayName") or step.get("task") or "script"
                script = str(step.get("script", ""))
                if "checkout" in step:
                    actions.append(Action("checkout", label))
                if script.strip() == "make test":
                    actions.append(Action("make-test", label))
                if "get.pulumi.com" in script:
                    actions.append(Action("pulumi-cli", label))
                if "##vso[task.prependpath]$(pwd)/.venv/bin" in script:
                    actions.append(Action("venv-path", label))
                if step.get("task", "").startswith("KubeloginInstaller@"):
                    actions.append(Action("kubelogin", label))
                if step.get("task", "").startswith("KubectlInstaller@"):
                    actions.append(Action("kubectl", label))
                if step.get("task", "").startswith("AzureCLI@"):
                    inputs = step.get("inputs") or {}
                    connection = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)),
                                        str(inputs.get("azureSubscription", "")))
                    actions.append(Action("azure-login", label, subject=connection))
                    inline = str(inputs.get("inlineScript", ""))
                    command = re.search(r"cloud-deploy\.sh ([\w-]+)", inline)
                    stack = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)),
                                   str((step.get("env") or {}).get("PULUMI_STACK", "")))
                    if command:
                        outcome = {"failed": False}
                        smoke_fails = trigger == "failure" or (trigger == "prod-failure" and
                                                               promotes(sources, stack or "dev"))
                        found = script_actions(sources.script, command.group(1), label,
                                               smoke_fails=smoke_fails, stack=stack,
                                               analysis_fails=trigger == "analysis-failure", outcome=outcome)
                        actions.extend(found)
                        if trigger == "failure" and any(a.kind == "smoke" for a in found):
                            failed = True
                        if trigger in ("analysis-failure", "prod-failure") and outcome["failed"]:
                            failed = job_failed = True
                        if command.group(1) == "release" and "isOutput=true" in inline and step.get("name"):
                            actions.append(Action("handoff", label))
            name = job.get("job") or job.get("deployment")
            after = {j.name for j in jobs if j.name.split(".")[0] in before[stage["stage"]]}
            jobs.append(Job(f"{stage['stage']}.{name}", actions, {}, after, failed=job_failed))
    return jobs


def walk(sources: Sources, pipeline: str, trigger: str) -> list[Job]:
    return (walk_github if pipeline == "github" else walk_azure)(sources, trigger)


# --- preconditions -------------------------------------------------------------------------------


def documented_identities(docs: str) -> set[str]:
    """OIDC subjects and service connection names docs/pipelines.md tells users to set up."""
    subjects = set(re.findall(r"`(repo:OWNER/REPO:[^`]+)`", docs))
    connections = set(re.findall(r"named `([\w-]+)`", docs))
    return subjects | connections


def _stack_secrets_ok(stack_file: str, env: dict[str, str]) -> bool:
    provider = (yaml.safe_load(stack_file) or {}).get("secretsprovider", "")
    cloud = str(provider).startswith(("azurekeyvault://", "awskms://", "gcpkms://", "hashivault://"))
    return cloud or bool(env.get("PULUMI_CONFIG_PASSPHRASE") or env.get("PULUMI_CONFIG_PASSPHRASE_FILE"))


def promotes(sources: Sources, stack: str) -> bool:
    """The stack deploys another stack's verified digest and never builds (``promoteFrom`` set)."""
    config = (yaml.safe_load(sources.stack(stack)) or {}).get("config") or {}
    return bool(config.get("modelship:promoteFrom"))


PROD_ROLLBACK = ("read-previous", "release-config", "policy-config", "up", "canary", "smoke")
"""What follows a failed prod smoke test, in this order: back to the release prod ran before."""


def _prod_rollback_problems(where: str, job: Job, kinds: list[str]) -> list[str]:
    found = []
    if not job.failed:
        found.append(f"{where}: a failed prod smoke test does not fail the run")
    if "smoke" not in kinds:
        return [*found, f"{where}: prod is never smoke-tested"]
    after = kinds[kinds.index("smoke") + 1:]
    steps = iter(after)
    if not all(any(kind == want for kind in steps) for want in PROD_ROLLBACK):
        found.append(f"{where}: after the failed smoke test prod does not roll back "
                     f"({' -> '.join(PROD_ROLLBACK)}); it does: {', '.join(after) or 'nothing'}")
    if {"record-good", "handoff"} & set(after):
        found.append(f"{where}: a failed prod release is recorded or handed on")
    return found


def violations(sources: Sources, pipeline: str, trigger: str) -> list[str]:
    """Every unmet precondition of every step that runs for ``trigger``."""
    found: list[str] = []
    allowed = documented_identities(sources.docs)
    if pipeline == "azure":
        for stage in yaml.safe_load(sources.azure)["stages"]:
            for job in stage["jobs"]:
                env_name = str(job.get("environment", ""))
                if "$(" in env_name:
                    found.append(f"{stage['stage']}: environment {env_name!r} uses macro syntax; "
                                 "use a template expression ${{ variables.x }}")
    done: dict[str, set[tuple[str, str]]] = {}
    """Job -> (kind, stack) of what it did: a promotion needs dev deployed and tested before it."""
    for job in walk(sources, pipeline, trigger):
        earlier = {pair for name in job.after for pair in done.get(name, set())}
        kinds = [a.kind for a in job.actions]
        if trigger == "analysis-failure" and "canary" in kinds:
            after = kinds[kinds.index("canary") + 1:]
            stack = next(a.stack or "dev" for a in job.actions if a.kind == "canary")
            alias = deploys_alias(sources, stack)
            if alias and "alias-back" not in after:
                found.append(f"{pipeline}/{trigger}/{job.name}: after the aborted canary, {stack}'s alias "
                             f"{alias!r} still names the rejected version (no `modelship-models rollback`)")
            if alias and "alias-back" in after and not alias_record_writable(sources, stack):
                found.append(f"{pipeline}/{trigger}/{job.name}: the alias move back needs the pipeline "
                             f"identity to write the {alias!r} alias record, which components/store.py does "
                             "not grant "
                             f"(writable: {', '.join(sources.writable_records) or 'nothing'})")
            after = [kind for kind in after if kind != "alias-back"]
            if not job.failed:
                found.append(f"{pipeline}/{trigger}/{job.name}: an aborted canary does not fail the run")
            if after:
                found.append(f"{pipeline}/{trigger}/{job.name}: the run goes on after an aborted canary "
                             f"({', '.join(after)}); Argo Rollouts already keeps the stable version serving")
        if trigger == "prod-failure" and any(a.kind == "up" and promotes(sources, a.stack or "dev")
                                             for a in job.actions):
            found.extend(_prod_rollback_problems(f"{pipeline}/{trigger}/{job.name}", job, kinds))
        if trigger != "analysis-failure" and "alias-back" in kinds:
            found.append(f"{pipeline}/{trigger}/{job.name}: moves an alias back though no canary aborted")
        have: set[str] = set()
        for action in job.actions:
            where = f"{pipeline}/{trigger}/{job.name} step '{action.step}'"
            if action.kind == "azure-login" and action.subject not in allowed:
                found.append(f"{where}: signs in to Azure as {action.subject!r}, which docs/pipelines.md "
                             f"does not tell users to federate (documented: {', '.join(sorted(allowed))})")
            if action.kind in ("backend-login", "fetch-model", "preview", "up", "acr-login"):
                for need in ("azure-login", "pulumi-cli"):
                    if need not in have and not (need == "pulumi-cli" and action.kind == "acr-login"):
                        found.append(f"{where}: {action.kind} before {need}")
            if action.kind in ("preview", "up"):
                stack = action.stack or "dev"
                builds = not promotes(sources, stack)
                if "kubelogin" not in have:
                    found.append(f"{where}: {action.kind} before kubelogin is installed")
                if builds and "fetch-model" not in have:
                    found.append(f"{where}: {action.kind} without the model fetched first")
                if "doctor" not in have:
                    found.append(f"{where}: {action.kind} before the doctor checked its prerequisites")
                if not action.policy:
                    found.append(f"{where}: {action.kind} without the policy pack")
                if not _stack_secrets_ok(sources.stack(stack), job.env):
                    found.append(f"{where}: {action.kind} would prompt for a passphrase (no cloud "
                                 f"secretsprovider in Pulumi.{stack}.yaml, no PULUMI_CONFIG_PASSPHRASE)")
            if action.kind == "up" and not promotes(sources, action.stack or "dev"):
                for need in ("builder", "acr-login"):
                    if need not in have:
                        found.append(f"{where}: up pushes the image before {need}")
                if "venv-path" not in have:
                    found.append(f"{where}: up runs the image's container test and SBOM step (python "
                                 "-m delivery.imagetest, delivery.sbom) before the project's virtualenv "
                                 "is on PATH")
            if action.kind == "up" and promotes(sources, action.stack or "dev"):
                stack = action.stack
                approved = [a.subject for a in job.actions if a.kind == "approval"]
                if not any(stack in subject for subject in approved):
                    found.append(f"{where}: up of {stack} without the approval of a {stack} environment "
                                 f"(the job's environments: {', '.join(approved) or 'none'})")
                for need, why in (("release-config", "the release dev verified set as its config"),
                                  ("policy-config", "the policy pack configured with the verified digest")):
                    if need not in have:
                        found.append(f"{where}: up of {stack} without {why}")
                if not action.policy_config:
                    found.append(f"{where}: up of {stack} without --policy-pack-config")
                for need, why in (("up", "deployed dev"), ("smoke", "smoke-tested dev"),
                                  ("handoff", "handed over the digest dev verified")):
                    if (need, "dev") not in earlier:
                        found.append(f"{where}: up of {stack} before an earlier job {why}")
                for never in ("fetch-model", "builder", "acr-login"):
                    if never in have:
                        found.append(f"{where}: {stack} never builds, yet the job ran {never}")
            if action.kind == "up":
                have.discard("canary")  # each up starts a release of its own
            if action.kind == "canary":
                for need in ("up", "kubectl", "kubelogin", "azure-login", "pulumi-cli"):
                    if need not in have:
                        found.append(f"{where}: canary wait before {need}")
            if action.kind == "alias-back":
                for need in ("canary", "azure-login", "pulumi-cli"):
                    if need not in have:
                        found.append(f"{where}: alias move back before {need}")
            if action.kind == "smoke" and "up" in have and "canary" not in have:
                found.append(f"{where}: smoke test before the canary finished (it would judge a mix of "
                             "canary and stable pods)")
            have.add(action.kind)
        done[job.name] = {(a.kind, a.stack or "dev") for a in job.actions}
    return found
