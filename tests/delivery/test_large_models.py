"""Large models in the local flow, for real (Docker): an out-of-memory kill is reported as one.

The image is built exactly as ``make up`` builds it (the stack's build spec, BuildKit); the limit
is set far below what any Python server needs (24 MiB), so the kernel's OOM killer is certain to
stop it while it starts.
"""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from components.build_spec import make_build_spec
from delivery import engine, local
from delivery.local import DeliveryError, LocalSettings
from tests.delivery.conftest import copy_context
from training.train_digits import train

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def built(docker_engine, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("large")
    context = copy_context(base / "app")
    train(context / "model", name="digits", version="1.0.0", source_revision="oomtest")
    instance = f"mst-{uuid.uuid4().hex[:8]}"
    settings = LocalSettings(state_dir=base / "state", context=context, instance=instance,
                             repository=f"modelship-test/{instance}")
    spec = make_build_spec(context, revision="oomtest", base_image=local.choose_base_image(settings))
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
        local.test_image(tiny, iid, spec)
    message = str(failure.value)
    assert "killed for running out of memory (State.OOMKilled, exit status 137)" in message, message
    assert "Its memory limit is 24m; model digits@1.0.0 is 0 MiB and needs at least 512m" in message
    assert "ConnectionResetError" not in message.split("container log:")[0]
    # Reported as soon as the container died, not after the start-up budget ran out.
    assert "did not answer 200 within" not in message
    assert engine.container_state(f"{settings.instance}-candidate") is None


def test_the_derived_limit_serves_the_same_image(built) -> None:
    settings, spec, iid = built
    local.test_image(settings.sized_for(spec.manifest), iid, spec)
