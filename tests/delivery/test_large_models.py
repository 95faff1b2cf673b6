"""Large models in the local flow, for real (Docker): an OOM kill is reported as one; no model re-sent.

The image is built exactly as ``make up`` builds it (the stack's build spec, BuildKit); the limit
is set far below what any Python server needs (24 MiB), so the kernel's OOM killer is certain to
stop it while it starts.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from pathlib import Path

import pytest

from components.build_spec import make_build_spec, stage_contract
from delivery import build, cli, engine
from delivery.settings import DeliveryError, LocalSettings
from modelship_contract.signature import sign
from modelstore.signing import export_trusted_keys
from tests.delivery.conftest import copy_context
from training.large_model import inflate
from training.train_digits import train

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def built(docker_engine, signing_keys, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("large")
    context = copy_context(base / "app")
    train(context / "model", name="digits", version="1.0.0", source_revision="oomtest")
    # As the model store hands it over: signed, with the keys the build and the server trust.
    sign(context / "model", signing_keys.private_key)
    export_trusted_keys(context / "trust", signing_keys.trusted_dir)
    instance = f"mst-{uuid.uuid4().hex[:8]}"
    settings = LocalSettings(state_dir=base / "state", context=context, instance=instance,
                             repository=f"modelship-test/{instance}")
    stage_contract(context)  # as every build does (delivery/build.py, the Pulumi program)
    spec = make_build_spec(context, revision="oomtest", base_image=build.choose_base_image(settings))
    tag = f"modelship-test/{instance}:oom"
    iid = engine.build(spec.context, spec.dockerfile, spec.build_args, [tag], echo=False)
    try:
        yield settings, spec, iid
    finally:
        engine.docker("rmi", "-f", tag, check=False)


def test_an_oom_kill_is_reported_with_the_limit_and_the_model_size(built) -> None:
    settings, spec, iid = built
    tiny = dataclasses.replace(settings.sized_for(spec.manifest), memory="24m")
    with pytest.raises(DeliveryError) as failure:
        build.check_candidate(tiny, iid, spec)
    message = str(failure.value)
    assert "killed for running out of memory (State.OOMKilled, exit status 137)" in message, message
    assert "Its memory limit is 24m; model digits@1.0.0 is 0 MiB and needs at least 576m (the model once" \
        in message
    assert "ConnectionResetError" not in message.split("container log:")[0]
    # Reported as soon as the container died, not after the start-up budget ran out.
    assert "did not answer 200 within" not in message
    assert engine.container_state(f"{settings.instance}-candidate") is None


def test_the_derived_limit_serves_the_same_image(built) -> None:
    settings, spec, iid = built
    build.check_candidate(settings.sized_for(spec.manifest), iid, spec)


CONTEXT_RE = re.compile(r"transferring context: ([0-9.]+)([kMG]?B)")
UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def context_sent(output: str) -> float:
    """Bytes of build context BuildKit says it transferred (it sends only files changed since)."""
    sizes = [float(n) * UNITS[u] for n, u in CONTEXT_RE.findall(output)]
    assert sizes, f"no 'transferring context' line in the build output:\n{output[-2000:]}"
    return max(sizes)


def test_a_code_only_release_sends_no_model_bytes(deployment, tmp_path: Path, capsys) -> None:
    """An unchanged model comes from the cache as a hard link (same inode and mtime), so BuildKit's
    incremental context transfer does not send it again; only the changed code goes."""
    settings, store = deployment
    train(tmp_path / "small", "digits", "1.0.0", source_revision="ctx")
    manifest = inflate(tmp_path / "small", tmp_path / "large", 40, version="3.0.0")
    store.publish(tmp_path / "large")
    cli.up(settings, echo=True, store=store)
    first = context_sent(capsys.readouterr().out)
    assert first >= manifest.size, "the first build must send the model once"

    init = settings.context / "modelserver" / "__init__.py"
    init.write_text(init.read_text() + "\n# code-only change (test_large_models)\n")
    record = cli.up(settings, echo=True, store=store)
    second = context_sent(capsys.readouterr().out)
    assert record["model_version"] == "3.0.0" and record["model_bytes_transferred"] == 0
    assert second < 1e6, f"a code-only build sent {second:.0f} bytes of context ({manifest.size}-byte model)"
