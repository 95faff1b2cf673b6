"""One home for the image's runtime contract: the Dockerfile says what ``modelship_contract.image`` says.

A Dockerfile cannot import Python, so it writes the port, the user and the paths as literals. These
tests parse ``app/Dockerfile`` and compare each literal with the contract; and they check that the
product code does not write those literals again instead of importing them.
"""

from __future__ import annotations

import io
import re
import shlex
import tokenize
from pathlib import Path

import pytest

from components import sizing
from modelship_contract import image

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "app" / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of each instruction, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def final_stage(text: str) -> list[tuple[str, str]]:
    steps = instructions(text)
    last = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last:]


def env_of(steps: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in steps:
        if keyword == "ENV":
            env.update(dict(item.split("=", 1) for item in shlex.split(args)))
    return env


def labels_of(steps: list[tuple[str, str]]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for keyword, args in steps:
        if keyword == "LABEL":
            labels.update(dict(item.split("=", 1) for item in shlex.split(args)))
    return labels


def copies(steps: list[tuple[str, str]]) -> list[list[str]]:
    return [shlex.split(args) for keyword, args in steps if keyword == "COPY"]


def check(text: str) -> list[str]:
    """Every way the Dockerfile ``text`` disagrees with the contract (empty: it agrees)."""
    steps = final_stage(text)
    env = env_of(steps)
    problems = []

    def want(what: str, actual: object, expected: object) -> None:
        if actual != expected:
            problems.append(f"{what}: Dockerfile has {actual!r}, modelship_contract.image has {expected!r}")

    want("EXPOSE", [a for k, a in steps if k == "EXPOSE"], [str(image.PORT)])
    want("USER", [a for k, a in steps if k == "USER"], [image.USER])
    want(f"ENV {image.PORT_ENV}", env.get(image.PORT_ENV), str(image.PORT))
    want(f"ENV {image.MODEL_DIR_ENV}", env.get(image.MODEL_DIR_ENV), image.MODEL_DIR)
    want(f"ENV {image.TRUST_DIR_ENV}", env.get(image.TRUST_DIR_ENV), image.IMAGE_TRUST_DIR)
    want("ENV PYTHONPATH", env.get("PYTHONPATH"), image.APP_DIR)
    want("ENV MODELSHIP_WORKERS", env.get("MODELSHIP_WORKERS"), str(image.WORKERS))
    labels = labels_of(steps)
    for key, arg in zip(image.MODEL_LABELS, ("MODEL_NAME", "MODEL_VERSION", "MODEL_SHA256"), strict=True):
        want(f"LABEL {key}", labels.get(key), f"${{{arg}}}")
    targets = {c[-1].rstrip("/") for c in copies(steps)}
    for path in (image.MODEL_DIR, image.IMAGE_TRUST_DIR, f"{image.APP_DIR}/modelserver",
                 f"{image.APP_DIR}/modelship_contract"):
        if path not in targets:
            problems.append(f"COPY: no layer copies into {path} (copies go to {sorted(targets)})")
    health = " ".join(a for k, a in steps if k == "HEALTHCHECK")
    period = re.search(r"--start-period=(\d+)s", health)
    want("HEALTHCHECK --start-period (s)", int(period.group(1)) if period else None, sizing.STARTUP_BASE_S)
    for part in (f"'{image.READY_PATH}'", f"'{image.PORT_ENV}'", f"'{image.PORT}'"):
        if part not in health:
            problems.append(f"HEALTHCHECK does not probe {part} (it says: {health})")
    return problems


def test_the_dockerfile_says_what_the_contract_says() -> None:
    assert check(DOCKERFILE.read_text()) == []


@pytest.mark.parametrize(("old", "new", "named"), [
    ("EXPOSE 8080", "EXPOSE 8081", "EXPOSE"),
    ("USER 10001:10001", "USER 10002:10002", "USER"),
    ("MODELSHIP_MODEL_DIR=/opt/model", "MODELSHIP_MODEL_DIR=/opt/models", "ENV MODELSHIP_MODEL_DIR"),
    ("MODELSHIP_PORT=8080", "MODELSHIP_PORT=9000", "ENV MODELSHIP_PORT"),
    ("PYTHONPATH=/opt/app", "PYTHONPATH=/srv/app", "ENV PYTHONPATH"),
    ("MODELSHIP_WORKERS=2", "MODELSHIP_WORKERS=4", "ENV MODELSHIP_WORKERS"),
    ("COPY --from=model /opt/model/ /opt/model/", "COPY --from=model /opt/model/ /srv/model/", "/opt/model"),
    ("COPY modelship_contract/ /opt/app/modelship_contract/", "", "/opt/app/modelship_contract"),
    ("/v2/health/ready", "/healthz", "HEALTHCHECK"),
    ("--start-period=120s", "--start-period=60s", "--start-period"),
    ("io.modelship.model.name=", "io.modelship.model_name=", "LABEL io.modelship.model.name"),
    ('io.modelship.model.sha256="${MODEL_SHA256}"', 'io.modelship.model.sha256="${MODEL_SHA}"',
     "LABEL io.modelship.model.sha256"),
])
def test_a_dockerfile_that_drifts_is_caught(old: str, new: str, named: str) -> None:
    text = DOCKERFILE.read_text()
    assert old in text
    problems = check(text.replace(old, new))
    assert problems and any(named in p for p in problems), problems


# Literals of the image contract that product code must import instead of writing: (token type, value).
_PRODUCT = ("components", "delivery", "modelstore", "app/modelserver", "preflight", "policy", "training")
_PATHS = (image.MODEL_DIR, image.IMAGE_TRUST_DIR, image.APP_DIR, "/v2/health/", "io.modelship.model.")
_DOCSTRING = re.compile(r"^[rbuf]*(\'\'\'|\"\"\")", re.I)


def contract_literals(source: str) -> list[str]:
    """Number and (one-line) string literals in ``source`` that repeat the image contract."""
    numbers = (str(image.UID), str(image.PORT))
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NUMBER:
            repeated = tok.string in numbers
        elif tok.type == tokenize.STRING and not _DOCSTRING.match(tok.string):
            repeated = any(part in tok.string for part in (*_PATHS, f"{image.UID}:", f":{image.PORT}"))
        else:
            repeated = False
        if repeated:
            found.append(f"line {tok.start[0]}: {tok.string}")
    return found


def test_product_code_imports_the_contract_instead_of_repeating_it() -> None:
    offenders = {}
    for top in _PRODUCT:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            found = contract_literals(path.read_text())
            if found:
                offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}


def test_the_literal_guard_finds_a_repeated_value() -> None:
    assert contract_literals('MODEL = "/opt/model/manifest.json"\nuid = 10001\nurl = f"http://x:8080"\n') == [
        "line 1: \"/opt/model/manifest.json\"", "line 2: 10001", "line 3: f\"http://x:8080\""]
    assert contract_literals('labels.get("io.modelship.model.sha256")\n') == [
        "line 1: \"io.modelship.model.sha256\""]
    assert contract_literals('"""Docs may name /opt/model."""\n# and 10001 in a comment\n') == []
